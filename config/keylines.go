package config

import (
	"strconv"

	"github.com/BurntSushi/toml"
)

// keyLines maps each key path of a TOML document, spelt as toml.Key.String
// does, to the line where it first appears. BurntSushi/toml keeps key
// positions private, so error messages about keys it decoded fine (unknown
// keys, durations given as numbers) find their line here. It is called only
// on documents toml has already parsed; anything it does not understand ends
// the scan early, which costs only line numbers. Keys inside inline tables
// are not recorded.
func keyLines(src string) map[string]int {
	s := &lineScanner{src: src, line: 1}
	out := map[string]int{}
	record := func(path []string) {
		for i := 1; i <= len(path); i++ {
			k := toml.Key(path[:i]).String()
			if _, ok := out[k]; !ok {
				out[k] = s.line
			}
		}
	}
	var table []string
	for {
		s.skipSpace(true)
		if s.pos >= len(s.src) {
			return out
		}
		if s.src[s.pos] == '[' {
			s.pos++
			array := s.peek() == '['
			if array {
				s.pos++
			}
			key, ok := s.key()
			if !ok || s.peek() != ']' {
				return out
			}
			s.pos++
			if array {
				if s.peek() != ']' {
					return out
				}
				s.pos++
			}
			table = key
			record(table)
			continue
		}
		key, ok := s.key()
		if !ok || s.peek() != '=' {
			return out
		}
		s.pos++
		record(append(table[:len(table):len(table)], key...))
		if !s.skipValue() {
			return out
		}
	}
}

type lineScanner struct {
	src  string
	pos  int
	line int
}

func (s *lineScanner) peek() byte {
	if s.pos < len(s.src) {
		return s.src[s.pos]
	}
	return 0
}

// skipSpace skips blanks and comments, and newlines too if newlines is set.
func (s *lineScanner) skipSpace(newlines bool) {
	for s.pos < len(s.src) {
		switch c := s.src[s.pos]; {
		case c == ' ' || c == '\t' || c == '\r':
			s.pos++
		case c == '\n' && newlines:
			s.pos++
			s.line++
		case c == '#':
			for s.pos < len(s.src) && s.src[s.pos] != '\n' {
				s.pos++
			}
		default:
			return
		}
	}
}

// key reads a dotted key and the blanks after it.
func (s *lineScanner) key() ([]string, bool) {
	var parts []string
	for {
		s.skipSpace(false)
		start := s.pos
		switch s.peek() {
		case '"':
			if !s.skipString() {
				return nil, false
			}
			k, err := strconv.Unquote(s.src[start:s.pos])
			if err != nil {
				k = s.src[start+1 : s.pos-1]
			}
			parts = append(parts, k)
		case '\'':
			if !s.skipString() {
				return nil, false
			}
			parts = append(parts, s.src[start+1:s.pos-1])
		default:
			for s.pos < len(s.src) && isBare(s.src[s.pos]) {
				s.pos++
			}
			if s.pos == start {
				return nil, false
			}
			parts = append(parts, s.src[start:s.pos])
		}
		s.skipSpace(false)
		if s.peek() != '.' {
			return parts, true
		}
		s.pos++
	}
}

func isBare(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

// skipString skips a basic, literal or multi-line string starting at pos.
func (s *lineScanner) skipString() bool {
	q := s.src[s.pos]
	multi := len(s.src)-s.pos >= 3 && s.src[s.pos+1] == q && s.src[s.pos+2] == q
	if multi {
		s.pos += 3
	} else {
		s.pos++
	}
	for s.pos < len(s.src) {
		c := s.src[s.pos]
		switch {
		case c == '\\' && q == '"':
			s.pos++
			if s.peek() == '\n' {
				s.line++
			}
		case c == '\n':
			if !multi {
				return false
			}
			s.line++
		case c == q && !multi:
			s.pos++
			return true
		case c == q && len(s.src)-s.pos >= 3 && s.src[s.pos+1] == q && s.src[s.pos+2] == q:
			s.pos += 3
			// Up to two more quotes belong to the content.
			for i := 0; i < 2 && s.peek() == q; i++ {
				s.pos++
			}
			return true
		}
		s.pos++
	}
	return false
}

// skipValue skips a value up to and including the end of its line, across
// lines inside arrays and inline tables.
func (s *lineScanner) skipValue() bool {
	depth := 0
	for s.pos < len(s.src) {
		switch c := s.src[s.pos]; c {
		case '"', '\'':
			if !s.skipString() {
				return false
			}
			continue
		case '[', '{':
			depth++
		case ']', '}':
			depth--
		case '#':
			s.skipSpace(false)
			continue
		case '\n':
			s.line++
			if depth <= 0 {
				s.pos++
				return true
			}
		}
		s.pos++
	}
	return true
}
