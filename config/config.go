package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Log configures logging; both programs use it as their [log] table.
type Log struct {
	// Level is the minimum level logged: debug, info (default), warn or error.
	Level string `toml:"level"`
	// Format is text (default; logfmt-style key=value) or json (one object
	// per line).
	Format string `toml:"format"`
	// File, when not empty, is a log file written besides stderr, in the
	// same format. It is rotated by size: the full file becomes FILE.1,
	// FILE.1 becomes FILE.2 and so on. Default "": stderr only.
	File string `toml:"file"`
	// MaxSizeMB is the size in MiB at which File is rotated; 1-10240,
	// default 50.
	MaxSizeMB int `toml:"max_size_mb"`
	// MaxFiles is how many log files are kept, File itself included; the
	// oldest is deleted at rotation. 1-1000, default 5 (1 keeps no old
	// file: File is truncated when full).
	MaxFiles int `toml:"max_files"`
}

// DefaultLog returns the default logging settings: level info, text
// format, stderr only; a log file, when set, rotates at 50 MiB and keeps 5
// files.
func DefaultLog() Log { return Log{Level: "info", Format: "text", MaxSizeMB: 50, MaxFiles: 5} }

// SlogLevel returns Level as a slog.Level; an unknown level gives Info.
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

func (l Log) validate() error {
	var errs []error
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level %q: want debug, info, warn or error", l.Level))
	}
	switch l.Format {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format %q: want text or json", l.Format))
	}
	if l.MaxSizeMB < 1 || l.MaxSizeMB > 10240 {
		errs = append(errs, fmt.Errorf("log.max_size_mb = %d: must be between 1 and 10240 (MiB)", l.MaxSizeMB))
	}
	if l.MaxFiles < 1 || l.MaxFiles > 1000 {
		errs = append(errs, fmt.Errorf("log.max_files = %d: must be between 1 and 1000", l.MaxFiles))
	}
	if l.File != "" && strings.HasSuffix(l.File, string(os.PathSeparator)) {
		errs = append(errs, fmt.Errorf("log.file %q names a directory: give a file path, such as %q", l.File, l.File+"ferry.log"))
	}
	return errors.Join(errs...)
}

// ErrInvalidName is wrapped by [ValidName] errors.
var ErrInvalidName = errors.New("invalid name")

// ValidName checks the rule for agent and connection names: 1 to 63
// characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit.
// Errors wrap [ErrInvalidName] and quote the name.
func ValidName(s string) error {
	ok := len(s) >= 1 && len(s) <= 63
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-')
	}
	if !ok {
		q := s
		if len(q) > 80 {
			q = q[:80]
		}
		return fmt.Errorf("%w %q: use 1-63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit", ErrInvalidName, q)
	}
	return nil
}

// decode decodes TOML data over v, a pointer to a config struct already
// holding its defaults. Besides syntax and type errors it rejects keys that
// are not in v's schema (BurntSushi/toml would match them case-insensitively
// or ignore them) and durations given as bare numbers (which toml reads as
// nanoseconds). Every error names the file.
func decode(data []byte, name string, v any) error {
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(v)
	if err != nil {
		return decodeError(name, err)
	}
	schema := map[string]reflect.Type{}
	schemaOf(reflect.TypeOf(v).Elem(), "", schema)
	var (
		errs  []error
		seen  = map[string]bool{}
		lines map[string]int // built on the first problem
	)
	// lineOf finds the line of key k, or else of the closest enclosing key
	// found (an inline table holding k starts on k's line).
	lineOf := func(k toml.Key) string {
		if lines == nil {
			lines = keyLines(string(data))
		}
		for i := len(k); i > 0; i-- {
			if n, ok := lines[k[:i].String()]; ok {
				return fmt.Sprintf(" (line %d)", n)
			}
		}
		return ""
	}
	for _, k := range md.Keys() {
		full := k.String()
		var unknown toml.Key
		for i := 1; i <= len(k); i++ {
			if schema[k[:i].String()] == nil {
				unknown = k[:i]
				break
			}
		}
		switch {
		case unknown != nil:
			u := unknown.String()
			if seen[u] {
				continue
			}
			seen[u] = true
			msg := fmt.Sprintf("%s: unknown key %q%s", name, u, lineOf(unknown))
			if s := suggest(u, schema); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			errs = append(errs, errors.New(msg))
		case schema[full] == durationType && md.Type(k...) != "String":
			errs = append(errs, fmt.Errorf("%s: key %q%s: a duration must be a string with a unit, such as \"30s\" or \"500ms\"", name, full, lineOf(k)))
		}
	}
	for _, k := range md.Undecoded() {
		if p := k.String(); !seen[p] && schema[p] != nil {
			// Unreachable unless toml changes how it marks keys; never
			// let a key pass silently.
			errs = append(errs, fmt.Errorf("%s: key %q%s was not decoded", name, p, lineOf(k)))
		}
	}
	return errors.Join(errs...)
}

var durationType = reflect.TypeFor[time.Duration]()

// decodeError rewrites a toml error as "file: key "k" (line n): problem".
func decodeError(name string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		msg := pe.Message
		if strings.HasPrefix(msg, "invalid duration") {
			msg += `: use a number with a unit, such as "30s", "500ms" or "5m"`
		}
		if pe.LastKey != "" {
			return fmt.Errorf("%s: key %q (line %d): %s", name, pe.LastKey, pe.Position.Line, msg)
		}
		return fmt.Errorf("%s: line %d: %s", name, pe.Position.Line, msg)
	}
	// Type errors are plain errors: "toml: line 3 (last key "k"): ...".
	if m := typeErrRe.FindStringSubmatch(err.Error()); m != nil {
		key, uerr := strconv.Unquote(m[2])
		if uerr != nil {
			key = m[2]
		}
		msg := m[3]
		if t := incompatibleRe.FindStringSubmatch(msg); t != nil {
			msg = "want " + friendlyType(t[2]) + ", got " + friendlyType(t[1])
		} else if t := notTableRe.FindStringSubmatch(msg); t != nil {
			msg = "want a table, got " + friendlyType(t[1])
		}
		if m[1] != "" {
			return fmt.Errorf("%s: key %q (line %s): %s", name, key, m[1], msg)
		}
		return fmt.Errorf("%s: key %q: %s", name, key, msg)
	}
	return fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "toml: "))
}

var (
	typeErrRe      = regexp.MustCompile(`^toml: (?:line (\d+) )?\(last key ("(?:[^"\\]|\\.)*")\): (.*)$`)
	incompatibleRe = regexp.MustCompile(`^incompatible types: TOML value has type (.+); destination has type (.+)$`)
	notTableRe     = regexp.MustCompile(`^type mismatch for .+: expected table but found (.+)$`)
)

// friendlyType names a type from a toml error (a Go type of the TOML value,
// or a kind of the destination) as a TOML user would.
func friendlyType(t string) string {
	switch {
	case t == "string":
		return "a string"
	case t == "integer" || strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint"):
		return "an integer"
	case t == "float" || strings.HasPrefix(t, "float"):
		return "a number"
	case t == "boolean" || t == "bool":
		return "a boolean (true or false)"
	case t == "slice" || strings.HasPrefix(t, "[]map"):
		if strings.HasPrefix(t, "[]map") {
			return "an array of tables"
		}
		return "an array"
	case strings.HasPrefix(t, "[]"):
		return "an array"
	case t == "map" || strings.HasPrefix(t, "map["):
		return "a table"
	case strings.HasPrefix(t, "time."):
		return "a date or time"
	}
	return t
}

// schemaOf records every key path of the config struct t, as toml spells
// keys, with its Go type. Slices of structs ([[connections]]) contribute
// their element's keys, as toml reports them without an index.
func schemaOf(t reflect.Type, prefix string, out map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
		if !f.IsExported() || name == "-" || name == "" {
			continue
		}
		key := prefix + name
		out[key] = f.Type
		ft := f.Type
		if ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			schemaOf(ft, key+".", out)
		}
	}
}

// suggest returns the known key closest to an unknown one in the same
// table, if it is close enough to be a typo.
func suggest(unknown string, schema map[string]reflect.Type) string {
	parent := unknown[:strings.LastIndexByte(unknown, '.')+1]
	best, bestDist := "", 3
	for k := range schema {
		if !strings.HasPrefix(k, parent) || strings.Contains(k[len(parent):], ".") {
			continue
		}
		d := editDistance(strings.ToLower(unknown[len(parent):]), k[len(parent):])
		if d < bestDist || d == bestDist && best != "" && k < best {
			best, bestDist = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// The receive-window defaults, in MiB: with a 32 MiB window one connection
// can move about 200 MB/s over a 150 ms round trip, and 64 MiB bounds what
// a tunnel's grown windows can hold if their readers stop.
const (
	DefaultMaxStreamWindowMB = 32
	DefaultWindowBudgetMB    = 64
)

// validWindows checks the receive-window keys of section.
func validWindows(errs *[]error, section string, maxWindowMB, budgetMB int) {
	if maxWindowMB < 1 || maxWindowMB > 1024 {
		*errs = append(*errs, fmt.Errorf("%s.max_stream_window_mb = %d: must be between 1 and 1024 (MiB)", section, maxWindowMB))
	}
	if budgetMB < 0 || budgetMB > 1024 {
		*errs = append(*errs, fmt.Errorf("%s.window_budget_mb = %d: must be between 0 and 1024 (MiB)", section, budgetMB))
	}
}

// positive appends an error naming key when d is not positive.
func positive(errs *[]error, key string, d time.Duration) {
	if d <= 0 {
		*errs = append(*errs, fmt.Errorf("%s = %s: must be positive", key, d))
	}
}

// validListen checks a listen address: host:port with a numeric port
// (0 lets the system pick one), host empty, an IP or a name.
func validListen(key, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%s %q: want host:port, such as 127.0.0.1:8081 or :443", key, addr)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%s %q: port %q is not a number 0-65535", key, addr, port)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '-' || c == '_') {
			return fmt.Errorf("%s %q: host %q is neither an IP address nor a host name", key, addr, host)
		}
	}
	return nil
}

// listenPort returns the port of a valid listen address.
func listenPort(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	if p, err := strconv.ParseUint(port, 10, 16); err == nil {
		return strconv.FormatUint(p, 10)
	}
	return port
}

// parsePrefixes parses IPs and CIDR prefixes; a bare IP becomes a
// full-length prefix and IPv4-mapped IPv6 is unmapped.
func parsePrefixes(key string, list []string) ([]netip.Prefix, error) {
	var (
		out  []netip.Prefix
		errs []error
	)
	for _, s := range list {
		var p netip.Prefix
		if strings.Contains(s, "/") {
			var err error
			if p, err = netip.ParsePrefix(s); err != nil {
				errs = append(errs, fmt.Errorf("%s: %q is not an IP address or CIDR prefix", key, s))
				continue
			}
			if p.Masked() != p {
				errs = append(errs, fmt.Errorf("%s: %q has host bits set; did you mean %q?", key, s, p.Masked()))
				continue
			}
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil || a.Zone() != "" {
				errs = append(errs, fmt.Errorf("%s: %q is not an IP address or CIDR prefix", key, s))
				continue
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4In6() {
			bits := p.Bits() - 96
			if bits < 0 {
				errs = append(errs, fmt.Errorf("%s: %q: IPv4-mapped prefix shorter than /96", key, s))
				continue
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), bits)
		}
		out = append(out, p)
	}
	return out, errors.Join(errs...)
}

// maxSecretFile bounds how much of a token file is read: tokens are short,
// and a mistaken path to a large file or device must not hang the program.
const maxSecretFile = 64 << 10

// readSecretFile reads a token file and returns its trimmed contents. The
// contents never appear in an error.
func readSecretFile(key, path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxSecretFile+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	if len(b) > maxSecretFile {
		return "", fmt.Errorf("%s %q: larger than %d bytes; it should hold only the token", key, path, maxSecretFile)
	}
	s := strings.TrimSpace(string(b))
	if s == "" {
		return "", fmt.Errorf("%s %q is empty; it should hold the token", key, path)
	}
	return s, nil
}

// checkSecret rejects tokens that cannot travel in an HTTP header, without
// revealing the token.
func checkSecret(from, tok string) error {
	for i := 0; i < len(tok); i++ {
		if tok[i] <= ' ' || tok[i] >= 0x7f {
			return fmt.Errorf("token from %s contains white space, control or non-ASCII characters", from)
		}
	}
	return nil
}

// inFile prefixes each of the (possibly joined) errors with the file name.
func inFile(name string, err error) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs := j.Unwrap()
		out := make([]error, len(errs))
		for i, e := range errs {
			out[i] = fmt.Errorf("%s: %w", name, e)
		}
		return errors.Join(out...)
	}
	return fmt.Errorf("%s: %w", name, err)
}
