package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ferry-tunnel/ferry/access"
	"github.com/ferry-tunnel/ferry/config"
	"github.com/ferry-tunnel/ferry/mux"
	"github.com/ferry-tunnel/ferry/tunnel"
)

// ErrCheckFailed is returned by [Check] when at least one check failed.
var ErrCheckFailed = errors.New("one or more checks failed")

// CheckOptions are what [Check] needs besides the config.
type CheckOptions struct {
	// ConfigPath names the config file in the report.
	ConfigPath string
	// Target, when not empty, is a host:port to explain against the
	// allow-list and to try to connect to from this host.
	Target string
	// Version is sent in the test handshake.
	Version string
	// Getenv reads FERRY_AGENT_TOKEN and the proxy variables' siblings; nil
	// means os.Getenv.
	Getenv func(string) string
	// Resolver looks up the gateway, proxy and target names; nil means
	// net.DefaultResolver.
	Resolver *net.Resolver
	// Now is the clock for certificate expiry; nil means time.Now.
	Now func() time.Time
	// ExpiryWarning is how close to its expiry a certificate gets a
	// warning; default 14 days.
	ExpiryWarning time.Duration
}

// Report line statuses. A line without a status is information (such as a
// firewall rule), not a check.
const (
	statusOK   = "ok"
	statusWarn = "warn"
	statusFail = "FAIL"
	statusSkip = "skip"
)

// report writes one line per check and counts the outcomes.
type report struct {
	w                  io.Writer
	ok, warned, failed int
}

func (r *report) line(status, check, format string, args ...any) {
	switch status {
	case statusOK:
		r.ok++
	case statusWarn:
		r.warned++
	case statusFail:
		r.failed++
	}
	fmt.Fprintf(r.w, "%-4s  %-8s  %s\n", status, check, fmt.Sprintf(format, args...))
}

// CheckConfigFailed reports a config that does not load (the error of
// config.LoadAgent) in the same form as [Check], one line per problem, and
// returns ErrCheckFailed.
func CheckConfigFailed(w io.Writer, path string, err error) error {
	r := &report{w: w}
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	for _, e := range errs {
		for l := range strings.SplitSeq(e.Error(), "\n") {
			r.line(statusFail, "config", "%s", l)
		}
	}
	fmt.Fprintf(w, "ferry-agent check: the config %s does not load: fix the lines above and run check again\n", path)
	return ErrCheckFailed
}

// Check diagnoses an agent's set-up from the machine it runs on, writing one
// line per check to w: the config, the gateway's addresses and the firewall
// rules they need, the proxy, TLS, the token (one real handshake, whose
// session is closed at once), and with o.Target which allow rule admits it.
// Every failed line says what is wrong and what to do. It returns
// ErrCheckFailed when a check failed, and never writes the token.
func Check(ctx context.Context, cfg *config.Agent, o CheckOptions, w io.Writer) error {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Resolver == nil {
		o.Resolver = net.DefaultResolver
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ExpiryWarning <= 0 {
		o.ExpiryWarning = 14 * 24 * time.Hour
	}
	c := &checker{cfg: cfg, o: o, r: &report{w: w}, instance: "check-" + newInstanceID()}
	c.run(ctx)
	r := c.r
	switch {
	case r.failed > 0:
		fmt.Fprintf(w, "ferry-agent check: %d failed, %d warning(s), %d ok\n", r.failed, r.warned, r.ok)
		return ErrCheckFailed
	case r.warned > 0:
		fmt.Fprintf(w, "ferry-agent check: all checks passed, %d warning(s)\n", r.warned)
	default:
		fmt.Fprintf(w, "ferry-agent check: all %d checks passed\n", r.ok)
	}
	return nil
}

type checker struct {
	cfg      *config.Agent
	o        CheckOptions
	r        *report
	instance string // marks the test tunnel as check's on the gateway
}

func (c *checker) run(ctx context.Context) {
	tokenWhere := c.checkConfig()
	d, err := c.newDialer()
	if err != nil {
		c.r.line(statusFail, "gateway", "%v: fix [gateway] in %s", err, c.o.ConfigPath)
	} else if ips := c.checkGateway(ctx, d); len(ips) > 0 {
		c.firewallRules(ctx, d, ips)
		good := c.checkPaths(ctx, d, ips)
		c.checkToken(ctx, d, good, tokenWhere)
	}
	if c.o.Target != "" {
		c.checkTarget(ctx, c.o.Target)
	}
}

// checkConfig reports the loaded config and where the token comes from,
// and returns that place for messages ("put the new token in …").
func (c *checker) checkConfig() (tokenWhere string) {
	g := c.cfg.Gateway
	var from string
	switch {
	case c.o.Getenv(config.EnvAgentToken) != "":
		from, tokenWhere = "the "+config.EnvAgentToken+" environment variable", "the "+config.EnvAgentToken+" environment variable"
	case g.Token != "":
		from, tokenWhere = "gateway.token in the config file", "gateway.token in "+c.o.ConfigPath+" (better: a token_file)"
	default:
		from, tokenWhere = "token_file "+g.TokenFile, g.TokenFile+" (or FERRY_AGENT_TOKEN)"
	}
	c.r.line(statusOK, "config", "%s is valid: %d tunnel(s), %d allow rule(s), token from %s",
		c.o.ConfigPath, g.HAConnections, len(c.cfg.Access.Allow), from)
	if _, err := c.cfg.ResolveToken(c.o.Getenv); err != nil {
		c.r.line(statusFail, "config", "%v", err)
	}
	if c.o.Getenv(config.EnvAgentToken) == "" && g.Token != "" {
		c.r.line(statusWarn, "config", "the token is written in %s: move it to a file readable only by the agent and set gateway.token_file", c.o.ConfigPath)
	}
	if c.o.Getenv(config.EnvAgentToken) == "" && g.Token == "" && g.TokenFile != "" && runtime.GOOS != "windows" {
		if fi, err := os.Stat(g.TokenFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			c.r.line(statusWarn, "config", "token file %s has mode %04o: other users can read the token; run chmod 600 %s", g.TokenFile, fi.Mode().Perm(), g.TokenFile)
		}
	}
	if len(c.cfg.Access.Allow) == 0 {
		c.r.line(statusWarn, "config", "[access] allow is empty: the gateway can reach nothing through this agent; add the targets it needs")
	}
	return tokenWhere
}

func (c *checker) newDialer() (*tunnel.Dialer, error) {
	hostname, _ := os.Hostname()
	return tunnel.NewDialer(tunnel.DialConfig{
		URL:              c.cfg.Gateway.URL,
		Token:            func() (string, error) { return c.cfg.ResolveToken(c.o.Getenv) },
		Version:          c.o.Version,
		Instance:         c.instance,
		Hostname:         hostname,
		CAFile:           c.cfg.Gateway.CAFile,
		Proxy:            c.cfg.Gateway.Proxy,
		AllowedIPs:       c.cfg.Gateway.AllowedPrefixes,
		HandshakeTimeout: c.cfg.Gateway.HandshakeTimeout,
		Resolver:         c.o.Resolver,
	})
}

// checkGateway resolves the gateway name and returns the addresses the
// agent may use.
func (c *checker) checkGateway(ctx context.Context, d *tunnel.Dialer) []netip.Addr {
	ips, err := d.Resolve(ctx)
	if err != nil {
		if errors.Is(err, tunnel.ErrNoGatewayIP) {
			c.r.line(statusFail, "gateway", "%v", err)
		} else {
			c.r.line(statusFail, "gateway", "%v: check this host's DNS settings (or use the gateway's IP address in gateway.url)", err)
		}
		return nil
	}
	if _, err := netip.ParseAddr(d.Host()); err == nil {
		c.r.line(statusOK, "gateway", "%s is an IP address: no DNS lookup needed", d.Host())
		return ips
	}
	c.r.line(statusOK, "gateway", "%s resolves to %s", d.Host(), joinAddrs(ips))
	if len(c.cfg.Gateway.AllowedPrefixes) > 0 {
		// Look again to name the addresses allowed_ips leaves out.
		all, err := c.o.Resolver.LookupNetIP(ctx, "ip", d.Host())
		if err == nil {
			var out []netip.Addr
			for _, a := range all {
				if a = a.Unmap(); !slices.Contains(ips, a) && !slices.Contains(out, a) {
					out = append(out, a)
				}
			}
			if len(out) > 0 {
				c.r.line(statusWarn, "gateway", "%s also resolves to %s, outside allowed_ips %s: the agent never connects there; add them to allowed_ips if the gateway really runs there",
					d.Host(), joinAddrs(out), strings.Join(c.cfg.Gateway.AllowedIPs, ", "))
			}
		}
	}
	return ips
}

// firewallRules prints the outbound rules the network team must allow.
func (c *checker) firewallRules(ctx context.Context, d *tunnel.Dialer, ips []netip.Addr) {
	p := d.ProxyURL()
	if p == nil {
		for _, ip := range ips {
			c.r.line("", "firewall", "allow outbound TCP from this host to %s port %s", ip, d.Port())
		}
		return
	}
	host, port := p.Hostname(), p.Port()
	if port == "" {
		port = "80"
		if p.Scheme == "https" {
			port = "443"
		}
	}
	var proxyIPs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		proxyIPs = []netip.Addr{a.Unmap()}
	} else {
		all, err := c.o.Resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			c.r.line(statusFail, "proxy", "cannot resolve the proxy %s: %v: check gateway.proxy (or HTTPS_PROXY) and this host's DNS", p.Redacted(), unwrapDNS(err))
			return
		}
		for _, a := range all {
			if a = a.Unmap(); !slices.Contains(proxyIPs, a) {
				proxyIPs = append(proxyIPs, a)
			}
		}
	}
	for _, ip := range proxyIPs {
		c.r.line("", "firewall", "allow outbound TCP from this host to %s port %s (the proxy %s)", ip, port, host)
	}
	for _, ip := range ips {
		c.r.line("", "firewall", "the proxy must allow CONNECT to %s", net.JoinHostPort(ip.String(), d.Port()))
	}
}

// checkPaths probes every gateway address (TCP or proxy CONNECT, then TLS)
// and returns those that passed.
func (c *checker) checkPaths(ctx context.Context, d *tunnel.Dialer, ips []netip.Addr) []netip.Addr {
	var good []netip.Addr
	for _, ip := range ips {
		res, err := d.Probe(ctx, ip)
		addr := net.JoinHostPort(ip.String(), d.Port())
		var pe *tunnel.ProbeError
		errors.As(err, &pe)
		if err == nil || pe.Step != tunnel.StepConnect {
			if res.Proxy != "" {
				if err == nil || pe.Step != tunnel.StepProxy {
					c.r.line(statusOK, "proxy", "%s: connected in %s, CONNECT %s accepted", res.Proxy, ms(res.ConnectTime), addr)
				}
			} else {
				c.r.line(statusOK, "connect", "%s: TCP connect in %s", addr, ms(res.ConnectTime))
			}
		}
		if err != nil {
			c.probeFailed(d, addr, res, pe)
			continue
		}
		c.tlsOK(d, ip, res.TLS)
		good = append(good, ip)
	}
	return good
}

func (c *checker) probeFailed(d *tunnel.Dialer, addr string, res tunnel.ProbeResult, pe *tunnel.ProbeError) {
	timeout := isTimeout(pe.Err) || errors.Is(pe.Err, context.DeadlineExceeded)
	switch pe.Step {
	case tunnel.StepConnect:
		if res.Proxy != "" {
			why := unwrapOp(pe.Err).Error()
			if timeout {
				why = "no answer within " + c.cfg.Gateway.HandshakeTimeout.String()
			}
			c.r.line(statusFail, "proxy", "cannot connect to the proxy %s: %s: check gateway.proxy (or HTTPS_PROXY) and allow this host to reach the proxy", res.Proxy, why)
			return
		}
		if timeout {
			c.r.line(statusFail, "connect", "%s: no answer within %s: a firewall probably drops the connection; allow outbound TCP from this host to %s", addr, c.cfg.Gateway.HandshakeTimeout, strings.Replace(addr, ":", " port ", 1))
			return
		}
		c.r.line(statusFail, "connect", "%s: %v: allow outbound TCP from this host to this address and port, and check that the gateway listens there", addr, unwrapOp(pe.Err))
	case tunnel.StepProxy:
		var se *tunnel.ProxyStatusError
		switch {
		case errors.As(pe.Err, &se) && se.Code == 407:
			c.r.line(statusFail, "proxy", "%s refused CONNECT %s: authentication required (%s): put the credentials in gateway.proxy as http://user:password@host:port", res.Proxy, addr, se.Status)
		case errors.As(pe.Err, &se):
			c.r.line(statusFail, "proxy", "%s refused CONNECT %s (%s): ask the proxy's administrators to allow CONNECT to %s", res.Proxy, addr, se.Status, addr)
		default:
			c.r.line(statusFail, "proxy", "%s: %v: check gateway.proxy (or HTTPS_PROXY)", res.Proxy, pe.Err)
		}
	case tunnel.StepTLS:
		c.tlsFailed(d, addr, pe.Err)
	}
}

func (c *checker) tlsOK(d *tunnel.Dialer, ip netip.Addr, st tls.ConnectionState) {
	chain := st.PeerCertificates
	if len(st.VerifiedChains) > 0 {
		chain = st.VerifiedChains[0]
	}
	if len(chain) == 0 {
		c.r.line(statusFail, "tls", "%s: the gateway presented no certificate", ip)
		return
	}
	leaf := chain[0]
	soonest := leaf
	for _, cert := range chain {
		if cert.NotAfter.Before(soonest.NotAfter) {
			soonest = cert
		}
	}
	left := soonest.NotAfter.Sub(c.o.Now())
	if left < c.o.ExpiryWarning {
		which := "the gateway certificate"
		if soonest != leaf {
			which = "the certificate of " + soonest.Subject.String() + " in its chain"
		}
		c.r.line(statusWarn, "tls", "%s: %s expires %s (in %s): renew it before then, or agents will stop connecting",
			ip, which, soonest.NotAfter.UTC().Format("2006-01-02 15:04 MST"), days(left))
		return
	}
	c.r.line(statusOK, "tls", "%s: certificate verifies for %s; %s", ip, d.Host(), describeCert(leaf, c.o.Now()))
}

func (c *checker) tlsFailed(d *tunnel.Dialer, addr string, err error) {
	var ve *tls.CertificateVerificationError
	var desc string
	if errors.As(err, &ve) && len(ve.UnverifiedCertificates) > 0 {
		desc = " (" + describeCert(ve.UnverifiedCertificates[0], c.o.Now()) + ")"
	}
	var (
		inv  x509.CertificateInvalidError
		host x509.HostnameError
		ua   x509.UnknownAuthorityError
	)
	trust := "set gateway.ca_file to the PEM file of the CA that issued it (for a self-signed gateway, its certificate), or add that CA to this host's trusted roots"
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired && inv.Cert != nil:
		now := c.o.Now()
		what := "expired on " + inv.Cert.NotAfter.UTC().Format("2006-01-02 15:04 MST")
		if now.Before(inv.Cert.NotBefore) {
			what = "is not valid before " + inv.Cert.NotBefore.UTC().Format("2006-01-02 15:04 MST")
		}
		if ve != nil && len(ve.UnverifiedCertificates) > 0 && !inv.Cert.Equal(ve.UnverifiedCertificates[0]) {
			what = "chain holds a certificate (" + inv.Cert.Subject.String() + ") that " + what
		}
		c.r.line(statusFail, "tls", "%s: the gateway certificate %s, and this host's time is %s%s: renew the gateway certificate, or fix this host's clock",
			addr, what, now.UTC().Format("2006-01-02 15:04 MST"), desc)
	case errors.As(err, &host):
		c.r.line(statusFail, "tls", "%s: the certificate is not valid for %s%s: use a gateway.url host name the certificate holds, or fix the gateway certificate", addr, d.Host(), desc)
	case errors.As(err, &ua):
		c.r.line(statusFail, "tls", "%s: the certificate is signed by an authority this host does not trust%s: %s", addr, desc, trust)
	case ve != nil:
		c.r.line(statusFail, "tls", "%s: the certificate does not verify: %v%s: %s", addr, ve.Err, desc, trust)
	default:
		c.r.line(statusFail, "tls", "%s: TLS handshake failed: %v: check that gateway.url names the gateway's tunnel port (a TLS-inspecting proxy or a load balancer may be in the way)", addr, err)
	}
}

// checkToken opens one real tunnel, starts its session and closes it at
// once, telling the gateway first that it is draining so that no stream is
// ever sent its way.
func (c *checker) checkToken(ctx context.Context, d *tunnel.Dialer, good []netip.Addr, tokenWhere string) {
	if len(good) == 0 {
		c.r.line(statusSkip, "token", "not tested: no gateway address passed the checks above")
		return
	}
	ip := good[0]
	life, cancel := context.WithCancel(ctx)
	defer cancel()
	conn, err := d.Dial(ctx, life, ip)
	if err != nil {
		c.tokenFailed(err, ip, tokenWhere)
		return
	}
	set := mux.DefaultSettings()
	set.KeepaliveInterval = c.cfg.Gateway.KeepaliveInterval
	set.KeepaliveTimeout = c.cfg.Gateway.KeepaliveTimeout
	set.HandshakeTimeout = c.cfg.Gateway.HandshakeTimeout
	hostname, _ := os.Hostname()
	info := mux.Message{Version: c.o.Version, Hostname: hostname, OS: runtime.GOOS, Arch: runtime.GOARCH, Instance: c.instance}
	sess, hello, err := mux.Agent(ctx, conn, set, info, nil)
	if err != nil {
		c.r.line(statusFail, "token", "%s accepted the token (101), but the session did not start: %v: check that nothing between this host and the gateway cuts WebSocket connections", ip, err)
		return
	}
	sess.Send(mux.Message{Type: mux.TypeDrain, Reason: "ferry-agent check"})
	// The session pings at once; wait briefly for the answer to show a
	// round trip.
	for deadline := time.Now().Add(2 * time.Second); sess.RTT() == 0 && sess.Err() == nil && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	rtt := sess.RTT()
	sess.Close()
	node := ""
	if hello.Node != "" {
		node = " on node " + hello.Node
	}
	if rtt > 0 {
		c.r.line(statusOK, "token", "gateway %s accepted the token (101): session started%s (round trip %s) and closed", ip, node, ms(rtt))
		return
	}
	c.r.line(statusOK, "token", "gateway %s accepted the token (101): session started%s and closed", ip, node)
}

func (c *checker) tokenFailed(err error, ip netip.Addr, tokenWhere string) {
	var se *tunnel.StatusError
	switch {
	case errors.Is(err, tunnel.ErrTokenRejected):
		c.r.line(statusFail, "token", "gateway %s rejected the token (401): it is unknown, rotated or revoked; get the current one (ferry-gateway agents token NAME makes a new one) and put it in %s", ip, tokenWhere)
	case errors.Is(err, tunnel.ErrAgentDisabled):
		c.r.line(statusFail, "token", "gateway %s refused this agent (403): the agent is disabled on the gateway; ask the gateway's operator to enable it", ip)
	case errors.Is(err, tunnel.ErrRateLimited):
		c.r.line(statusFail, "token", "gateway %s rate-limited this address (429) after too many failed handshakes: fix the token of every agent behind this address, wait a minute and run check again", ip)
	case errors.Is(err, tunnel.ErrGatewayDraining):
		c.r.line(statusFail, "token", "gateway %s is draining (503) and takes no new tunnels: run check again in a minute", ip)
	case errors.As(err, &se):
		c.r.line(statusFail, "token", "gateway %s: %v: check that gateway.url (%s) is the gateway's tunnel endpoint", ip, se, c.cfg.Gateway.URL)
	default:
		c.r.line(statusFail, "token", "tunnel handshake with %s failed: %v", ip, err)
	}
}

// checkTarget explains what the allow-list says about target, and tries to
// connect to it when it is allowed.
func (c *checker) checkTarget(ctx context.Context, target string) {
	policy, err := access.Parse(c.cfg.Access.Allow)
	if err != nil { // Validate has parsed it already
		c.r.line(statusFail, "target", "[access] allow: %v", err)
		return
	}
	dec, err := policy.Check(target)
	switch {
	case errors.Is(err, access.ErrBadTarget):
		c.r.line(statusFail, "target", "%v: give --target as host:port, such as db.internal:5432", err)
		return
	case err != nil:
		c.r.line(statusFail, "target", "%s is denied: no rule in [access] allow admits it; to allow it, add %q to [access] allow and reload the agent (SIGHUP)",
			strconv.Quote(target), dec.Target())
		return
	case dec.Rule != "":
		c.r.line(statusOK, "target", "%s is allowed by rule %q", strconv.Quote(target), dec.Rule)
		c.reach(ctx, dec.Target())
		return
	}
	// A name that only IP rules can admit: the agent checks each address.
	addrs, err := c.o.Resolver.LookupNetIP(ctx, "ip", dec.Host)
	if err != nil {
		c.r.line(statusFail, "target", "%s: no name rule admits it and its addresses cannot be checked against the IP rules: %v", strconv.Quote(target), unwrapDNS(err))
		return
	}
	var allowed []netip.Addr
	var denied []string
	for _, a := range addrs {
		a = a.Unmap()
		if rule, ok := policy.AllowAddr(a, dec.Port); ok {
			allowed = append(allowed, a)
			c.r.line(statusOK, "target", "%s resolves to %s: allowed by rule %q", dec.Host, a, rule)
		} else {
			denied = append(denied, a.String())
		}
	}
	status := statusWarn
	if len(allowed) == 0 {
		status = statusFail
	}
	for _, a := range denied {
		c.r.line(status, "target", "%s resolves to %s: no rule admits %s, so the agent will not connect there; add a rule for it (such as %q) to [access] allow if it should",
			dec.Host, a, net.JoinHostPort(a, strconv.Itoa(int(dec.Port))), net.JoinHostPort(a, strconv.Itoa(int(dec.Port))))
	}
	for _, a := range allowed {
		c.reach(ctx, net.JoinHostPort(a.String(), strconv.Itoa(int(dec.Port))))
	}
}

// reach tries a TCP connection to an allowed target from this host, as the
// agent would.
func (c *checker) reach(ctx context.Context, addr string) {
	d := net.Dialer{Timeout: c.cfg.Access.DialTimeout, Resolver: c.o.Resolver}
	start := time.Now()
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		why := unwrapOp(err).Error()
		if isTimeout(err) {
			why = "no answer within " + c.cfg.Access.DialTimeout.String()
		}
		c.r.line(statusFail, "target", "cannot connect to %s from this host: %s: check that the service runs there and that this host may reach it", addr, why)
		return
	}
	conn.Close()
	c.r.line(statusOK, "target", "%s: TCP connect from this host in %s", addr, ms(time.Since(start)))
}

// describeCert says whose certificate it is, who issued it and when it
// expires.
func describeCert(cert *x509.Certificate, now time.Time) string {
	issuer := "issuer " + cert.Issuer.String()
	if cert.Issuer.String() == cert.Subject.String() {
		issuer = "self-signed"
	}
	expiry := cert.NotAfter.UTC().Format("2006-01-02 15:04 MST")
	if left := cert.NotAfter.Sub(now); left > 0 {
		expiry += " (in " + days(left) + ")"
	} else {
		expiry += " (" + days(-left) + " ago)"
	}
	return fmt.Sprintf("subject %s, %s, expires %s", cert.Subject, issuer, expiry)
}

func days(d time.Duration) string {
	switch n := int(d / (24 * time.Hour)); {
	case n >= 2:
		return strconv.Itoa(n) + " days"
	case d >= time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + " hours"
	default:
		return d.Round(time.Minute).String()
	}
}

func ms(d time.Duration) string {
	if d < time.Millisecond {
		return d.Round(time.Microsecond).String()
	}
	return d.Round(100 * time.Microsecond).String()
}

func joinAddrs(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return strings.Join(s, ", ")
}

// unwrapDNS keeps the resolver's own words ("no such host").
func unwrapDNS(err error) error {
	var de *net.DNSError
	if errors.As(err, &de) {
		return de
	}
	return err
}
