package access

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

var testRules = []string{
	"db.internal:5432",
	"*.corp.example:443",
	"10.20.0.0/16:5432-5439",
	"10.0.0.5:22",
	"[2001:db8::/32]:443",
	"[::1]:80",
	"[fd00::5]:5432-5433",
	"Mixed.Case.Example.:8080",
	"_sip._tcp.example:5060",
}

func mustParse(t testing.TB, rules []string) *Policy {
	t.Helper()
	p, err := Parse(rules)
	if err != nil {
		t.Fatalf("Parse(%q): %v", rules, err)
	}
	return p
}

func TestParseValid(t *testing.T) {
	t.Parallel()
	for _, r := range append(slices.Clone(testRules),
		"0.0.0.0/0:443",
		"[::/0]:443",
		"a:1-65535",
		"localhost:1",
		"10.0.0.5/32:22",
		"x.y:080",
		"cafe.example:443",
		"deadbeef:443",
		"*.internal:1",
		strings.Repeat("a", 63)+".example:1",
	) {
		if _, err := Parse([]string{r}); err != nil {
			t.Errorf("Parse(%q): %v", r, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rule string
		want string // substring of the error
	}{
		{"db:99999", `allow rule "db:99999": port 99999 out of range 1-65535`},
		{"db:0", "port 0 out of range"},
		{"db:", "missing port"},
		{"db", "missing port"},
		{":80", "empty host"},
		{"", "empty rule"},
		{"db:http", `port "http" is not a number`},
		{"db:-1", "out of range"},
		{"db:10-5", "port range 10-5 is reversed"},
		{"db:1-", "out of range"},
		{"db:1-2-3", "not a number"},
		{"db :80", "white space"},
		{"*:443", "bare * host"},
		{"*:443", "0.0.0.0/0"},
		{"*.*.example:443", "whole first label"},
		{"db*.example:443", "whole first label"},
		{"a.*.example:443", "whole first label"},
		{"*.:443", "empty host"},
		{"*.10.0.0.1:443", "DNS name suffix"},
		{"10.20.1.0/16:5432", "host bits set; did you mean 10.20.0.0/16"},
		{"10.0.0.0/33:1", "invalid CIDR"},
		{"2001:db8::1:443", "must be in brackets"},
		{"2001:db8::/32:443", "must be in brackets"},
		{"[2001:db8::1:443", "missing ]"},
		{"[2001:db8::1]443", "want :port"},
		{"[2001:db8::1]", "missing port"},
		{"[2001:db8::1]:", "missing port"},
		{"[10.0.0.1]:80", "only for IPv6"},
		{"[db.internal]:80", "invalid IPv6 address"},
		{"[::ffff:10.0.0.5]:80", "IPv4-mapped"},
		{"[::ffff:10.0.0.0/104]:80", "IPv4-mapped"},
		{"[fe80::1%eth0]:80", "zones"},
		{"[]:80", "empty host"},
		{"0177.0.0.1:22", "ambiguous IP form"},
		{"2130706433:22", "ambiguous IP form"},
		{"0x7f.1:22", "ambiguous IP form"},
		{"127.1:22", "ambiguous IP form"},
		{"foo.123:22", "ambiguous IP form"},
		{"10.0.0.5.:22", "ambiguous IP form"},
		{"db..internal:5432", "empty label"},
		{".db:5432", "empty label"},
		{"db/x:5432", "invalid CIDR"},
		{"db!:5432", "invalid character"},
		{"bücher.example:443", "punycode"},
		{strings.Repeat("a", 64) + ".example:1", "longer than 63"},
		{strings.Repeat("a.", 127) + "aa:1", "longer than 253"},
	}
	for _, tt := range tests {
		_, err := Parse([]string{"ok.example:1", tt.rule})
		if err == nil {
			t.Errorf("Parse(%q): no error, want %q", tt.rule, tt.want)
			continue
		}
		if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Parse(%q) = %q, want it to contain %q", tt.rule, err, tt.want)
		}
		if !strings.Contains(err.Error(), "allow rule ") {
			t.Errorf("Parse(%q) = %q does not name the rule", tt.rule, err)
		}
	}
}

func TestParseReportsEveryBadRule(t *testing.T) {
	t.Parallel()
	_, err := Parse([]string{"a:0", "ok:1", "b:99999"})
	if err == nil || !strings.Contains(err.Error(), `"a:0"`) || !strings.Contains(err.Error(), `"b:99999"`) {
		t.Fatalf("Parse = %v, want both bad rules named", err)
	}
}

func TestRules(t *testing.T) {
	t.Parallel()
	in := []string{"db:1", "*.x:2"}
	p := mustParse(t, in)
	got := p.Rules()
	if !slices.Equal(got, in) {
		t.Fatalf("Rules() = %q, want %q", got, in)
	}
	got[0] = "changed"
	in[1] = "changed"
	if p.Rules()[0] != "db:1" || p.Rules()[1] != "*.x:2" {
		t.Fatal("Rules shares memory with the caller")
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	p := mustParse(t, testRules)
	type want struct {
		host   string
		port   uint16
		rule   string
		addr   bool  // NeedAddrCheck
		err    error // nil, ErrDenied or ErrBadTarget
		errSub string
	}
	tests := []struct {
		target string
		want   want
	}{
		// names
		{"db.internal:5432", want{host: "db.internal", port: 5432, rule: "db.internal:5432"}},
		{"DB.Internal:5432", want{host: "db.internal", port: 5432, rule: "db.internal:5432"}},
		{"db.internal.:5432", want{host: "db.internal", port: 5432, rule: "db.internal:5432"}},
		{"db.internal:05432", want{host: "db.internal", port: 5432, rule: "db.internal:5432"}},
		{"db.internal:5433", want{host: "db.internal", port: 5433, addr: true}},
		{"db.internal:5440", want{host: "db.internal", port: 5440, err: ErrDenied}},
		{"db.internal..:5432", want{err: ErrBadTarget, errSub: "empty label"}},
		{"mixed.case.example:8080", want{host: "mixed.case.example", port: 8080, rule: "Mixed.Case.Example.:8080"}},
		{"_sip._tcp.example:5060", want{host: "_sip._tcp.example", port: 5060, rule: "_sip._tcp.example:5060"}},
		{"other.internal:22", want{host: "other.internal", port: 22, addr: true}},
		{"other.internal:23", want{host: "other.internal", port: 23, err: ErrDenied, errSub: `"other.internal:23"`}},
		// wildcards
		{"a.corp.example:443", want{host: "a.corp.example", port: 443, rule: "*.corp.example:443"}},
		{"a.b.CORP.example.:443", want{host: "a.b.corp.example", port: 443, rule: "*.corp.example:443"}},
		{"corp.example:443", want{host: "corp.example", port: 443, addr: true}},
		{"xcorp.example:443", want{host: "xcorp.example", port: 443, addr: true}},
		{"a.corp.example:444", want{host: "a.corp.example", port: 444, err: ErrDenied}},
		{"a.corp.example.evil:443", want{host: "a.corp.example.evil", port: 443, addr: true}},
		// IPv4
		{"10.20.3.4:5432", want{host: "10.20.3.4", port: 5432, rule: "10.20.0.0/16:5432-5439"}},
		{"10.20.3.4:5439", want{host: "10.20.3.4", port: 5439, rule: "10.20.0.0/16:5432-5439"}},
		{"10.20.3.4:5440", want{host: "10.20.3.4", port: 5440, err: ErrDenied}},
		{"10.21.0.1:5432", want{host: "10.21.0.1", port: 5432, err: ErrDenied}},
		{"10.0.0.5:22", want{host: "10.0.0.5", port: 22, rule: "10.0.0.5:22"}},
		{"[::ffff:10.0.0.5]:22", want{host: "10.0.0.5", port: 22, rule: "10.0.0.5:22"}},
		{"[::ffff:a00:5]:22", want{host: "10.0.0.5", port: 22, rule: "10.0.0.5:22"}},
		{"10.0.0.6:22", want{host: "10.0.0.6", port: 22, err: ErrDenied}},
		// IPv6
		{"[2001:db8::1]:443", want{host: "2001:db8::1", port: 443, rule: "[2001:db8::/32]:443"}},
		{"[2001:DB8:0::1]:443", want{host: "2001:db8::1", port: 443, rule: "[2001:db8::/32]:443"}},
		{"[2001:db9::1]:443", want{host: "2001:db9::1", port: 443, err: ErrDenied}},
		{"[::1]:80", want{host: "::1", port: 80, rule: "[::1]:80"}},
		{"[0:0:0:0:0:0:0:1]:80", want{host: "::1", port: 80, rule: "[::1]:80"}},
		{"[fd00::5]:5433", want{host: "fd00::5", port: 5433, rule: "[fd00::5]:5432-5433"}},
		{"[::ffff:127.0.0.1]:80", want{host: "127.0.0.1", port: 80, err: ErrDenied}},
		// malformed and ambiguous
		{"db.internal", want{err: ErrBadTarget, errSub: "missing port"}},
		{"db.internal:", want{err: ErrBadTarget, errSub: "missing port"}},
		{"db.internal:0", want{err: ErrBadTarget, errSub: "port 0 out of range"}},
		{"db.internal:65536", want{err: ErrBadTarget, errSub: "port 65536 out of range"}},
		{"db.internal:+80", want{err: ErrBadTarget, errSub: "not a number"}},
		{"db.internal:80-81", want{err: ErrBadTarget, errSub: "not a number"}},
		{":5432", want{err: ErrBadTarget, errSub: "empty host"}},
		{"", want{err: ErrBadTarget, errSub: "missing port"}},
		{"db internal:5432", want{err: ErrBadTarget, errSub: "invalid character"}},
		{"db\x00:5432", want{err: ErrBadTarget, errSub: "invalid character"}},
		{"*.corp.example:443", want{err: ErrBadTarget, errSub: "invalid character"}},
		{"2130706433:22", want{err: ErrBadTarget, errSub: "ambiguous IP form"}},
		{"0177.0.0.1:22", want{err: ErrBadTarget, errSub: "ambiguous IP form"}},
		{"0x7f.1:22", want{err: ErrBadTarget, errSub: "ambiguous IP form"}},
		{"0x0a.0x14.0.1:5432", want{err: ErrBadTarget, errSub: "ambiguous IP form"}},
		{"127.1:22", want{err: ErrBadTarget, errSub: "ambiguous IP form"}},
		{"010.20.0.1:5432", want{err: ErrBadTarget, errSub: "ambiguous IP form"}},
		{"10.0.0.5.:22", want{err: ErrBadTarget, errSub: "ambiguous IP form"}},
		{"1.2.3.4.5:22", want{err: ErrBadTarget, errSub: "ambiguous IP form"}},
		{"[fe80::1%eth0]:22", want{err: ErrBadTarget, errSub: "zones"}},
		{"fe80::1:22", want{err: ErrBadTarget, errSub: "brackets"}},
		{"[10.0.0.5]:22", want{err: ErrBadTarget, errSub: "invalid IPv6 address"}},
		{"[db.internal]:22", want{err: ErrBadTarget, errSub: "invalid IPv6 address"}},
		{strings.Repeat("a", 64) + ".x:1", want{err: ErrBadTarget, errSub: "longer than 63"}},
		{strings.Repeat("a.", 127) + "aa:1", want{err: ErrBadTarget, errSub: "longer than 253"}},
		{strings.Repeat("a", 300) + ":1", want{err: ErrBadTarget, errSub: "longer than 263 bytes"}},
		{"bücher.example:443", want{err: ErrBadTarget, errSub: "punycode"}},
	}
	for _, tt := range tests {
		d, err := p.Check(tt.target)
		w := tt.want
		switch {
		case w.err == nil && err != nil:
			t.Errorf("Check(%q): %v", tt.target, err)
			continue
		case w.err != nil && !errors.Is(err, w.err):
			t.Errorf("Check(%q) error = %v, want %v", tt.target, err, w.err)
			continue
		case err != nil && !strings.Contains(err.Error(), w.errSub):
			t.Errorf("Check(%q) error = %q, want it to contain %q", tt.target, err, w.errSub)
		}
		if errors.Is(err, ErrBadTarget) {
			if d != (Decision{}) {
				t.Errorf("Check(%q) = %+v with a bad target, want zero Decision", tt.target, d)
			}
			continue
		}
		if got := (want{host: d.Host, port: d.Port, rule: d.Rule, addr: d.NeedAddrCheck, err: w.err, errSub: w.errSub}); got != w {
			t.Errorf("Check(%q) = %+v, want %+v", tt.target, d, w)
		}
	}
}

func TestCheckErrorNamesTarget(t *testing.T) {
	t.Parallel()
	p := mustParse(t, nil)
	for _, target := range []string{"db.internal:5432", "db.internal:0"} {
		_, err := p.Check(target)
		if err == nil || !strings.Contains(err.Error(), strconv.Quote(target)) {
			t.Errorf("Check(%q) = %v, want the target named", target, err)
		}
	}
}

func TestEmptyPolicyDeniesEverything(t *testing.T) {
	t.Parallel()
	for _, p := range []*Policy{mustParse(t, nil), mustParse(t, []string{}), nil} {
		for _, target := range []string{"db.internal:5432", "10.0.0.1:1", "[::1]:80", "localhost:65535"} {
			if d, err := p.Check(target); !errors.Is(err, ErrDenied) {
				t.Errorf("Check(%q) on empty policy = %+v, %v; want ErrDenied", target, d, err)
			}
		}
		if _, ok := p.AllowAddr(netip.MustParseAddr("10.0.0.1"), 1); ok {
			t.Error("AllowAddr on empty policy admitted an address")
		}
	}
}

func TestAllowAddr(t *testing.T) {
	t.Parallel()
	p := mustParse(t, append([]string{"0.0.0.0/0:9"}, testRules...))
	tests := []struct {
		addr string
		port uint16
		rule string // "" = denied
	}{
		{"10.20.255.255", 5435, "10.20.0.0/16:5432-5439"},
		{"::ffff:10.20.1.1", 5432, "10.20.0.0/16:5432-5439"},
		{"10.20.1.1", 5431, ""},
		{"10.0.0.5", 22, "10.0.0.5:22"},
		{"10.0.0.5", 0, ""},
		{"2001:db8:1::1", 443, "[2001:db8::/32]:443"},
		{"fe80::1%eth0", 443, ""},
		{"::1", 80, "[::1]:80"},
		{"::1", 9, ""}, // an IPv4 rule never admits IPv6
		{"::ffff:1.2.3.4", 9, "0.0.0.0/0:9"},
		{"127.0.0.1", 9, "0.0.0.0/0:9"},
		{"127.0.0.1", 80, ""}, // [::1] is not 127.0.0.1
	}
	for _, tt := range tests {
		rule, ok := p.AllowAddr(netip.MustParseAddr(tt.addr), tt.port)
		if rule != tt.rule || ok != (tt.rule != "") {
			t.Errorf("AllowAddr(%s, %d) = %q, %v; want %q", tt.addr, tt.port, rule, ok, tt.rule)
		}
	}
	if _, ok := p.AllowAddr(netip.Addr{}, 9); ok {
		t.Error("AllowAddr admitted the zero Addr")
	}
}

func TestSplitTarget(t *testing.T) {
	t.Parallel()
	host, port, err := SplitTarget("DB.Internal.:5432")
	if err != nil || host != "db.internal" || port != 5432 {
		t.Errorf("SplitTarget = %q, %d, %v", host, port, err)
	}
	if _, _, err := SplitTarget("db.internal"); !errors.Is(err, ErrBadTarget) {
		t.Errorf("SplitTarget without port = %v, want ErrBadTarget", err)
	}
}

func TestDecisionTarget(t *testing.T) {
	t.Parallel()
	for d, want := range map[Decision]string{
		{Host: "db.internal", Port: 5432}: "db.internal:5432",
		{Host: "2001:db8::1", Port: 443}:  "[2001:db8::1]:443",
	} {
		if got := d.Target(); got != want {
			t.Errorf("%+v.Target() = %q, want %q", d, got, want)
		}
	}
}

// checkInvariants verifies what every Decision must satisfy, whatever the input.
func checkInvariants(t *testing.T, p *Policy, target string) {
	t.Helper()
	d, err := p.Check(target)
	switch {
	case err == nil:
		if (d.Rule == "") == !d.NeedAddrCheck {
			t.Fatalf("Check(%q) = %+v: allowed needs exactly one of Rule and NeedAddrCheck", target, d)
		}
	case errors.Is(err, ErrBadTarget):
		return
	case errors.Is(err, ErrDenied):
		if d.Rule != "" || d.NeedAddrCheck {
			t.Fatalf("Check(%q) denied but = %+v", target, d)
		}
	default:
		t.Fatalf("Check(%q) error %v wraps neither sentinel", target, err)
	}
	if d.Port == 0 || d.Host == "" {
		t.Fatalf("Check(%q) = %+v: empty host or port", target, d)
	}
	again := net.JoinHostPort(d.Host, strconv.Itoa(int(d.Port)))
	d2, err2 := p.Check(again)
	if d2 != d || errors.Is(err2, ErrDenied) != errors.Is(err, ErrDenied) || (err2 == nil) != (err == nil) {
		t.Fatalf("Check(%q) = %+v, %v but Check(%q) = %+v, %v", target, d, err, again, d2, err2)
	}
}

func FuzzParse(f *testing.F) {
	for _, r := range testRules {
		f.Add(r)
	}
	for _, r := range []string{"*:443", "db:99999", "[::ffff:1.2.3.4]:1", "0x7f.1:1", "a:1-0", "[", "]:", "*.:1", "[::]:1", "0.0.0.0/0:1-65535"} {
		f.Add(r)
	}
	f.Fuzz(func(t *testing.T, r string) {
		p, err := Parse([]string{r})
		if err != nil {
			if !strings.Contains(err.Error(), "allow rule ") {
				t.Fatalf("Parse(%q) error %q does not name the rule", r, err)
			}
			return
		}
		if got := p.Rules(); len(got) != 1 || got[0] != r {
			t.Fatalf("Rules() = %q, want [%q]", got, r)
		}
		// A single-port rule naming one host admits that very spelling.
		i := strings.LastIndexByte(r, ':')
		host, port := r[:i], r[i+1:]
		if strings.ContainsAny(host, "*/") || strings.Contains(port, "-") {
			return
		}
		d, err := p.Check(r)
		if err != nil || d.Rule != r {
			t.Fatalf("rule %q does not admit itself: %+v, %v", r, d, err)
		}
	})
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		"db.internal:5432", "DB.INTERNAL.:5432", "a.corp.example:443", "corp.example:443",
		"10.20.1.2:5432", "[::ffff:10.0.0.5]:22", "[2001:db8::1]:443", "2130706433:22",
		"0177.0.0.1:22", "0x7f.1:22", "[fe80::1%eth0]:22", "db:0", "db:65536", ":1", "",
		"[::1]:80", "[]:1", "[:1", "a..b:1", "0x:1", "1.:1",
	} {
		f.Add("10.0.0.0/8:1-1024", s)
	}
	f.Add("*.example:80", "x.example:80")
	f.Fuzz(func(t *testing.T, extraRule, target string) {
		p, err := Parse(append(slices.Clone(testRules), extraRule))
		if err != nil {
			p = mustParse(t, testRules)
		}
		checkInvariants(t, p, target)
		_, _, _ = SplitTarget(target)
	})
}

func BenchmarkCheck(b *testing.B) {
	rules := slices.Clone(testRules)
	for i := range 20 {
		rules = append(rules, "host"+strconv.Itoa(i)+".example:443", "10."+strconv.Itoa(100+i)+".0.0/16:22")
	}
	p := mustParse(b, rules)
	for _, target := range []string{
		"db.internal:5432",
		"a.b.corp.example:443",
		"10.20.3.4:5435",
		"[2001:db8::1]:443",
		"unknown.example:5432",
		"unknown.example:9",
	} {
		b.Run(target, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = p.Check(target)
			}
		})
	}
}
