package admin

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// validName reports whether s matches [a-z0-9][a-z0-9._-]{0,62}, the rule
// for agent and connection names (safe in paths, labels and file names).
func validName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '-'):
		default:
			return false
		}
	}
	return true
}

func checkName(kind, s string) error {
	if s == "" {
		return fmt.Errorf("%s name is required", kind)
	}
	if !validName(s) {
		return fmt.Errorf("invalid %s name %q: use 1 to 63 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", kind, s)
	}
	return nil
}

func checkDescription(s string) error {
	if len(s) > maxDescription {
		return fmt.Errorf("description is longer than %d bytes", maxDescription)
	}
	if !utf8.ValidString(s) {
		return errors.New("description is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return errors.New("description must not contain control characters such as newlines")
		}
	}
	return nil
}

// checkHostPort checks a host:port address; the host may be empty (all
// interfaces) unless hostRequired. The port is numeric, 1 to 65535.
func checkHostPort(field, s string, hostRequired bool) error {
	if s == "" {
		return fmt.Errorf("%s is required (host:port)", field)
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("invalid %s %q: want host:port (IPv6 as [addr]:port)", field, s)
	}
	if host == "" && hostRequired {
		return fmt.Errorf("invalid %s %q: the host is missing", field, s)
	}
	for _, r := range host {
		ok := r < utf8.RuneSelf && (r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' || r == ':' || r == '%')
		if !ok {
			return fmt.Errorf("invalid %s %q: the host has the character %q", field, s, r)
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("invalid %s %q: the port must be a number from 1 to 65535", field, s)
	}
	return nil
}
