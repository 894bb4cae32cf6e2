package access

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// ErrBadTarget is wrapped by [Policy.Check] and [SplitTarget] errors for a
// target that is not a well-formed host:port: missing or out-of-range port,
// empty or over-long host, characters a host name may not have, an IPv6 zone,
// or an ambiguous numeric host such as 0177.0.0.1.
var ErrBadTarget = errors.New("bad target")

// ErrDenied is wrapped by [Policy.Check] errors for a well-formed target that
// no allow rule admits.
var ErrDenied = errors.New("target not allowed")

// maxTargetLen bounds the target string: a bracketed 255-byte host, a colon
// and a five-digit port. Longer input is rejected before any other work.
const maxTargetLen = 1 + 255 + 1 + 1 + 5

type ruleKind uint8

const (
	kindName     ruleKind = iota // exact DNS name
	kindWildcard                 // *.suffix
	kindPrefix                   // IP address or CIDR
)

type rule struct {
	text   string
	kind   ruleKind
	name   string       // kindName: the normalised name; kindWildcard: "." + normalised suffix
	prefix netip.Prefix // kindPrefix; a single address is a full-length prefix
	lo, hi uint16       // inclusive port range
}

func (r *rule) hasPort(port uint16) bool { return r.lo <= port && port <= r.hi }

// Policy is an immutable parsed allow-list; safe for concurrent use.
// A nil *Policy denies everything, like an empty one.
type Policy struct {
	texts []string
	rules []rule
}

// Parse parses allow rules (see the package documentation for their syntax).
// It reports every bad rule, each error naming the rule and what is wrong with
// it. An empty list gives a policy that denies everything.
func Parse(rules []string) (*Policy, error) {
	p := &Policy{texts: slices.Clone(rules), rules: make([]rule, 0, len(rules))}
	var errs []error
	for _, s := range rules {
		r, err := parseRule(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("allow rule %s: %w", quote(s), err))
			continue
		}
		p.rules = append(p.rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return p, nil
}

// Rules returns the rules as they were given to [Parse].
func (p *Policy) Rules() []string {
	if p == nil {
		return nil
	}
	return slices.Clone(p.texts)
}

// Decision is the outcome of checking a target before dialling.
type Decision struct {
	// Host is the normalised host: lower-case, no trailing dot; IPs in
	// canonical form, IPv4-mapped IPv6 unmapped. Dial this, not the raw target.
	Host string
	// Port is the target port, 1-65535.
	Port uint16
	// Rule is the rule that admitted the target by name or IP literal; ""
	// when none (yet).
	Rule string
	// NeedAddrCheck is true when Host is a name that no name rule admits but
	// an IP or CIDR rule for this port exists: the dialler must resolve Host
	// and check each address with [Policy.AllowAddr] before connecting to it.
	NeedAddrCheck bool
}

// Target returns Host and Port joined as host:port, with IPv6 in brackets.
func (d Decision) Target() string {
	return net.JoinHostPort(d.Host, strconv.Itoa(int(d.Port)))
}

// Check parses target as host:port (IPv6 as [addr]:port) and decides whether
// the policy admits it. A nil error means allowed, either outright (Rule set)
// or subject to checking the resolved addresses (NeedAddrCheck set).
// Errors wrap [ErrBadTarget] or [ErrDenied] and name the target. On
// ErrDenied the returned Decision still carries the normalised Host and Port.
func (p *Policy) Check(target string) (Decision, error) {
	host, ip, port, err := parseTarget(target)
	if err != nil {
		return Decision{}, fmt.Errorf("%w %s: %w", ErrBadTarget, quote(target), err)
	}
	d := Decision{Host: host, Port: port}
	if p == nil {
		return d, denied(target)
	}
	if ip.IsValid() {
		if r, ok := p.AllowAddr(ip, port); ok {
			d.Rule = r
			return d, nil
		}
		return d, denied(target)
	}
	for i := range p.rules {
		r := &p.rules[i]
		if !r.hasPort(port) {
			continue
		}
		switch r.kind {
		case kindName:
			if host == r.name {
				d.Rule = r.text
				return d, nil
			}
		case kindWildcard:
			// Labels are never empty, so a match has at least one label
			// in front of the suffix.
			if strings.HasSuffix(host, r.name) {
				d.Rule = r.text
				return d, nil
			}
		}
	}
	for i := range p.rules {
		if r := &p.rules[i]; r.kind == kindPrefix && r.hasPort(port) {
			d.NeedAddrCheck = true
			return d, nil
		}
	}
	return d, denied(target)
}

// AllowAddr reports whether an IP or CIDR rule admits the address actually
// dialled, and returns that rule. IPv4-mapped IPv6 addresses are unmapped
// first; zero, zoned and port-0 inputs are never admitted.
func (p *Policy) AllowAddr(ip netip.Addr, port uint16) (rule string, ok bool) {
	if p == nil || port == 0 || !ip.IsValid() || ip.Zone() != "" {
		return "", false
	}
	ip = ip.Unmap()
	for i := range p.rules {
		r := &p.rules[i]
		if r.kind == kindPrefix && r.hasPort(port) && r.prefix.Contains(ip) {
			return r.text, true
		}
	}
	return "", false
}

// SplitTarget parses a host:port target the way [Policy.Check] does and
// returns the normalised host and the port. Errors wrap [ErrBadTarget]. The
// gateway uses it to validate connection targets before any agent sees them.
func SplitTarget(target string) (host string, port uint16, err error) {
	host, _, port, err = parseTarget(target)
	if err != nil {
		return "", 0, fmt.Errorf("%w %s: %w", ErrBadTarget, quote(target), err)
	}
	return host, port, nil
}

func denied(target string) error {
	return fmt.Errorf("%w: %s matches no rule in [access] allow", ErrDenied, quote(target))
}

// quote quotes s for an error message, cut short so that hostile input
// cannot flood a log line.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		return strconv.Quote(s[:max]) + "..."
	}
	return strconv.Quote(s)
}

func parseRule(s string) (rule, error) {
	if s == "" {
		return rule{}, errors.New("empty rule")
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return rule{}, errors.New("contains white space")
	}
	host, bracketed, portText, err := splitHostPort(s)
	if err != nil {
		return rule{}, err
	}
	r := rule{text: s}
	if r.lo, r.hi, err = parsePortRange(portText); err != nil {
		return rule{}, err
	}
	if strings.IndexByte(host, '%') >= 0 {
		return rule{}, errors.New("IPv6 zones (%eth0) are not supported")
	}
	switch {
	case bracketed:
		if r.prefix, err = parseIPRule(host, true); err != nil {
			return rule{}, err
		}
		r.kind = kindPrefix
	case host == "*":
		return rule{}, errors.New("a bare * host is not allowed; write 0.0.0.0/0 if you really mean every IPv4 address ([::/0] for IPv6)")
	case strings.HasPrefix(host, "*."):
		suffix := host[2:]
		if strings.IndexByte(suffix, '*') >= 0 {
			return rule{}, errors.New("* is allowed only as the whole first label, as in *.example.com")
		}
		if looksNumeric(suffix) {
			return rule{}, errors.New("a wildcard needs a DNS name suffix, not an IP address")
		}
		n, err := normName(suffix)
		if err != nil {
			return rule{}, err
		}
		r.kind, r.name = kindWildcard, "."+n
	case strings.IndexByte(host, '*') >= 0:
		return rule{}, errors.New("* is allowed only as the whole first label, as in *.example.com")
	case strings.IndexByte(host, '/') >= 0 || looksNumeric(host):
		if r.prefix, err = parseIPRule(host, false); err != nil {
			return rule{}, err
		}
		r.kind = kindPrefix
	default:
		n, err := normName(host)
		if err != nil {
			return rule{}, err
		}
		r.kind, r.name = kindName, n
	}
	return r, nil
}

// parseIPRule parses the IP or CIDR host of a rule; IPv6 must come in
// brackets and IPv4 must not.
func parseIPRule(host string, bracketed bool) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.IndexByte(host, '/') >= 0 {
		var err error
		if p, err = netip.ParsePrefix(host); err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR prefix %s", quote(host))
		}
		if p.Masked() != p {
			return netip.Prefix{}, fmt.Errorf("CIDR prefix %s has host bits set; did you mean %s?", host, p.Masked())
		}
	} else {
		a, err := netip.ParseAddr(host)
		if err != nil {
			if bracketed {
				return netip.Prefix{}, fmt.Errorf("invalid IPv6 address %s", quote(host))
			}
			return netip.Prefix{}, fmt.Errorf("ambiguous IP form %s: write IPv4 addresses in dotted decimal, as in 127.0.0.1", quote(host))
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	a := p.Addr()
	switch {
	case a.Is4In6():
		return netip.Prefix{}, fmt.Errorf("IPv4-mapped IPv6 %s: write it as IPv4", host)
	case bracketed && a.Is4():
		return netip.Prefix{}, errors.New("brackets are only for IPv6 addresses")
	case !bracketed && a.Is6():
		return netip.Prefix{}, errors.New("IPv6 addresses must be in brackets, as in [2001:db8::/32]:443")
	}
	return p, nil
}

// splitHostPort splits host:port or [host]:port. Unlike net.SplitHostPort it
// insists on brackets around anything with a colon, and reports what is
// missing in words an operator understands.
func splitHostPort(s string) (host string, bracketed bool, port string, err error) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", false, "", errors.New("missing ] after IPv6 address")
		}
		host, rest := s[1:end], s[end+1:]
		if rest == "" {
			return "", false, "", errors.New("missing port (want [address]:port)")
		}
		if rest[0] != ':' {
			return "", false, "", errors.New("want :port after ]")
		}
		if host == "" {
			return "", false, "", errors.New("empty host")
		}
		if rest[1:] == "" {
			return "", false, "", errors.New("missing port (want [address]:port)")
		}
		return host, true, rest[1:], nil
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", false, "", errors.New("missing port (want host:port)")
	}
	host, port = s[:i], s[i+1:]
	if strings.IndexByte(host, ':') >= 0 {
		return "", false, "", errors.New("IPv6 addresses must be in brackets, as in [2001:db8::1]:443")
	}
	if host == "" {
		return "", false, "", errors.New("empty host")
	}
	if port == "" {
		return "", false, "", errors.New("missing port (want host:port)")
	}
	return host, false, port, nil
}

func parsePort(s string) (uint16, error) {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("port %s is not a number", quote(s))
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if s == "" || err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %s out of range 1-65535", s)
	}
	return uint16(n), nil
}

func parsePortRange(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = parsePort(a); err != nil {
		return 0, 0, err
	}
	if !isRange {
		return lo, lo, nil
	}
	if hi, err = parsePort(b); err != nil {
		return 0, 0, err
	}
	if lo > hi {
		return 0, 0, fmt.Errorf("port range %s is reversed: %d > %d", s, lo, hi)
	}
	return lo, hi, nil
}

// parseTarget parses and normalises a target. ip is valid when the host is an
// IP address (already unmapped; host is then its canonical text).
func parseTarget(t string) (host string, ip netip.Addr, port uint16, err error) {
	if len(t) > maxTargetLen {
		return "", netip.Addr{}, 0, fmt.Errorf("longer than %d bytes", maxTargetLen)
	}
	h, bracketed, portText, err := splitHostPort(t)
	if err != nil {
		return "", netip.Addr{}, 0, err
	}
	if port, err = parsePort(portText); err != nil {
		return "", netip.Addr{}, 0, err
	}
	if strings.IndexByte(h, '%') >= 0 {
		return "", netip.Addr{}, 0, errors.New("IPv6 zones (%eth0) are not supported")
	}
	if bracketed {
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is6() {
			return "", netip.Addr{}, 0, fmt.Errorf("invalid IPv6 address %s in brackets", quote(h))
		}
		a = a.Unmap()
		return a.String(), a, port, nil
	}
	if looksNumeric(h) {
		a, err := netip.ParseAddr(h)
		if err != nil || !a.Is4() || a.String() != h {
			return "", netip.Addr{}, 0, fmt.Errorf("ambiguous IP form %s: write IPv4 addresses in dotted decimal, as in 127.0.0.1", quote(h))
		}
		return h, a, port, nil
	}
	n, err := normName(h)
	if err != nil {
		return "", netip.Addr{}, 0, err
	}
	return n, netip.Addr{}, port, nil
}

// looksNumeric reports whether a resolver might read h as an IPv4 address:
// its last label (ignoring one trailing dot) is a decimal number or a
// 0x-prefixed hex number. This is the WHATWG URL "ends in a number" test; it
// catches 2130706433, 0177.0.0.1, 0x7f.1 and 127.1 while leaving names made
// of hex letters (cafe.example, dead.beef) alone.
func looksNumeric(h string) bool {
	h = strings.TrimSuffix(h, ".")
	last := h[strings.LastIndexByte(h, '.')+1:]
	if last == "" {
		return false
	}
	digits := "0123456789"
	if len(last) >= 2 && last[0] == '0' && (last[1] == 'x' || last[1] == 'X') {
		last, digits = last[2:], "0123456789abcdefABCDEF"
	}
	for i := 0; i < len(last); i++ {
		if strings.IndexByte(digits, last[i]) < 0 {
			return false
		}
	}
	return true
}

// normName validates a DNS name (letters, digits, hyphen, underscore; labels
// of 1-63 bytes; at most 253 bytes without the optional trailing dot) and
// returns it lower-cased without the trailing dot.
func normName(h string) (string, error) {
	h = strings.TrimSuffix(h, ".")
	if h == "" {
		return "", errors.New("empty host")
	}
	if len(h) > 253 {
		return "", errors.New("host name longer than 253 bytes")
	}
	label := 0
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c == '.':
			if label == 0 {
				return "", fmt.Errorf("empty label in host name %s", quote(h))
			}
			label = 0
			continue
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
		case c >= 0x80:
			return "", fmt.Errorf("non-ASCII host name %s: use its punycode (xn--) form", quote(h))
		default:
			return "", fmt.Errorf("invalid character %q in host name", c)
		}
		label++
		if label > 63 {
			return "", errors.New("host name label longer than 63 bytes")
		}
	}
	if label == 0 {
		return "", fmt.Errorf("empty label in host name %s", quote(h))
	}
	return strings.ToLower(h), nil
}
