package test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/internal/testutil"
)

// checkConfig writes an agent config for `ferry-agent check` against g. It
// pins allowed_ips to 127.0.0.1 so that a machine whose localhost also
// resolves to ::1 (where the gateway does not listen) gives the same result.
func checkConfig(t *testing.T, g *Gateway, token, caFile string, allow ...string) (cfgPath, tokenFile string) {
	t.Helper()
	dir := t.TempDir()
	tokenFile = filepath.Join(dir, "agent.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if caFile == "" {
		caFile = g.CertFile
	}
	quoted := make([]string, len(allow))
	for i, a := range allow {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	cfg := fmt.Sprintf(`[gateway]
url = %q
token_file = %q
ca_file = %q
allowed_ips = ["127.0.0.1/32"]

[access]
allow = [%s]
dial_timeout = "3s"
`, g.URL(), tokenFile, caFile, strings.Join(quoted, ", "))
	cfgPath = filepath.Join(dir, "agent.toml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, tokenFile
}

func runCheck(t *testing.T, args ...string) testutil.Result {
	t.Helper()
	res := testutil.Run(t, 60*time.Second, nil, agentBin, append([]string{"check"}, args...)...)
	t.Logf("ferry-agent check %s: exit %d\n%s%s", strings.Join(args, " "), res.Code, res.Stdout, res.Stderr)
	return res
}

// hasLine reports whether out has a line starting with status and check
// that holds every part.
func hasLine(out, status, check string, parts ...string) bool {
	re := regexp.MustCompile(`^` + regexp.QuoteMeta(status) + `\s+` + regexp.QuoteMeta(check) + `\s`)
	for l := range strings.SplitSeq(out, "\n") {
		if !re.MatchString(l) {
			continue
		}
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(l, p)
		}
		if ok {
			return true
		}
	}
	return false
}

func wantCheckLine(t *testing.T, res testutil.Result, status, check string, parts ...string) {
	t.Helper()
	if !hasLine(res.Stdout, status, check, parts...) {
		t.Errorf("check output has no %s %s line with %q", status, check, parts)
	}
}

// TestCheckAgainstGateway runs `ferry-agent check` as an operator would,
// against a real gateway: a good token, the target verdicts, a rotated
// token, the wrong CA, and usage errors.
func TestCheckAgainstGateway(t *testing.T) {
	g := startGateway(t, gatewayOpts{})
	tok := g.CreateAgent(t, "a1")
	echo := testutil.NewEchoServer(t)
	cfgPath, tokenFile := checkConfig(t, g, tok, "", echo.Addr)
	t.Cleanup(func() { checkNoSecret(t, g.Proc, "agent token", tok) })

	t.Run("all ok", func(t *testing.T) {
		from := g.Proc.Log.Len()
		res := runCheck(t, "--config", cfgPath, "--target", echo.Addr)
		if res.Code != 0 {
			t.Errorf("exit %d, want 0", res.Code)
		}
		wantCheckLine(t, res, "ok", "config")
		wantCheckLine(t, res, "ok", "gateway", "localhost resolves to 127.0.0.1")
		wantCheckLine(t, res, "", "firewall", "allow outbound TCP from this host to 127.0.0.1 port "+g.TunnelPort())
		wantCheckLine(t, res, "ok", "connect", "127.0.0.1:"+g.TunnelPort())
		wantCheckLine(t, res, "ok", "tls", "certificate verifies for localhost", "expires")
		wantCheckLine(t, res, "ok", "token", "accepted the token (101)", "node e2e", "closed")
		wantCheckLine(t, res, "ok", "target", fmt.Sprintf("%q is allowed by rule %q", echo.Addr, echo.Addr))
		wantCheckLine(t, res, "ok", "target", echo.Addr+": TCP connect")
		if strings.Contains(res.Stdout+res.Stderr, tok) {
			t.Error("check printed the token")
		}
		// The gateway saw a full session that drained and closed, not a
		// broken handshake.
		if _, err := g.Proc.Log.WaitForFrom(from, regexp.MustCompile(`msg="agent is draining its tunnel" agent=a1 .*reason="ferry-agent check"`), 10*time.Second); err != nil {
			t.Error(err)
		}
		if _, err := g.Proc.Log.WaitForFrom(from, regexp.MustCompile(`msg="agent tunnel closed" agent=a1 `), 10*time.Second); err != nil {
			t.Error(err)
		}
		for _, l := range g.Proc.Log.Lines()[from:] {
			if strings.Contains(l, "tunnel session failed to start") || strings.Contains(l, "level=ERROR") {
				t.Errorf("gateway logged: %s", l)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		testutil.Poll(t, 10*time.Second, "the check's tunnel gone from the API", func() (bool, string) {
			a, err := g.API.GetAgent(ctx, "a1")
			if err != nil {
				return false, err.Error()
			}
			return !a.Online && len(a.Tunnels) == 0, fmt.Sprintf("online=%v tunnels=%d", a.Online, len(a.Tunnels))
		})
	})

	t.Run("denied target", func(t *testing.T) {
		res := runCheck(t, "--config", cfgPath, "--target", "db.internal:5432")
		if res.Code != 1 {
			t.Errorf("exit %d, want 1", res.Code)
		}
		wantCheckLine(t, res, "ok", "token")
		wantCheckLine(t, res, "FAIL", "target", `"db.internal:5432" is denied`, `add "db.internal:5432" to [access] allow`)
	})

	t.Run("wrong CA", func(t *testing.T) {
		other, _, err := testutil.WriteCert(t.TempDir(), "localhost")
		if err != nil {
			t.Fatal(err)
		}
		path, _ := checkConfig(t, g, tok, other, echo.Addr)
		res := runCheck(t, "--config", path)
		if res.Code != 1 {
			t.Errorf("exit %d, want 1", res.Code)
		}
		wantCheckLine(t, res, "FAIL", "tls", "does not trust", "ca_file")
		wantCheckLine(t, res, "skip", "token")
	})

	t.Run("expired gateway certificate", func(t *testing.T) {
		// A gateway serving an expired certificate that ca_file trusts.
		dir := t.TempDir()
		certFile, keyFile, err := testutil.WriteCertUntil(dir, time.Now().Add(-time.Hour), "localhost")
		if err != nil {
			t.Fatal(err)
		}
		o := gatewayOpts{DataDir: dir, Tunnel: "127.0.0.1:0", Admin: "127.0.0.1:0", AdminToken: "adm-" + randomHex(16)}
		gwCfg := writeGatewayConfig(t, o, "expired", fmt.Sprintf("cert_file = %q\nkey_file = %q", certFile, keyFile))
		expired := &Gateway{Opts: o, ConfigPath: gwCfg, CertFile: certFile, Conns: map[string]string{}}
		expired.Proc = testutil.Start(t, "ferry-gateway", []string{"FERRY_ADMIN_TOKEN=" + o.AdminToken}, gatewayBin, "serve", "--config", gwCfg)
		expired.awaitStart(t)
		path, _ := checkConfig(t, expired, tok, "", echo.Addr)
		res := runCheck(t, "--config", path)
		if res.Code != 1 {
			t.Errorf("exit %d, want 1", res.Code)
		}
		wantCheckLine(t, res, "FAIL", "tls", "expired on", "renew the gateway certificate")
		wantCheckLine(t, res, "skip", "token")
	})

	t.Run("rotated token", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		newTok, err := g.API.RotateToken(ctx, "a1")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { checkNoSecret(t, g.Proc, "new agent token", newTok) })
		res := runCheck(t, "--config", cfgPath)
		if res.Code != 1 {
			t.Errorf("exit %d, want 1", res.Code)
		}
		wantCheckLine(t, res, "ok", "tls")
		wantCheckLine(t, res, "FAIL", "token", "rejected the token (401)", "rotated or revoked", tokenFile)
		if strings.Contains(res.Stdout+res.Stderr, tok) || strings.Contains(res.Stdout+res.Stderr, newTok) {
			t.Error("check printed a token")
		}
		// The new token in the file makes the check pass again.
		if err := writeFile(tokenFile, newTok+"\n"); err != nil {
			t.Fatal(err)
		}
		if res := runCheck(t, "--config", cfgPath); res.Code != 0 {
			t.Errorf("with the new token: exit %d, want 0", res.Code)
		}
	})

	t.Run("bad config and usage", func(t *testing.T) {
		bad := filepath.Join(t.TempDir(), "bad.toml")
		os.WriteFile(bad, []byte("[gateway]\nurl = \"ws://plain.example\"\ntokn = \"x\"\n"), 0o600)
		res := runCheck(t, "--config", bad)
		if res.Code != 1 {
			t.Errorf("bad config: exit %d, want 1", res.Code)
		}
		wantCheckLine(t, res, "FAIL", "config", `unknown key "gateway.tokn"`)
		if res := runCheck(t, "--no-such-flag"); res.Code != 2 {
			t.Errorf("bad flag: exit %d, want 2", res.Code)
		}
		if res := runCheck(t, "--config", cfgPath, "extra"); res.Code != 2 {
			t.Errorf("extra argument: exit %d, want 2", res.Code)
		}
	})
}
