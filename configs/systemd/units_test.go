package systemd

import (
	"strings"
	"testing"
)

func TestDefaultsAreTheFiles(t *testing.T) {
	t.Parallel()
	if Agent("", "") != agentUnit || Gateway("", "") != gatewayUnit {
		t.Error("with no paths given, the units must be the files unchanged")
	}
	if Agent(AgentBinary, AgentConfig) != agentUnit {
		t.Error("the default paths must give the file unchanged")
	}
}

func TestExecStartQuoting(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ bin, cfg, want string }{
		{"/opt/ferry/ferry-agent", "/srv/agent.toml", `ExecStart=/opt/ferry/ferry-agent run --config /srv/agent.toml`},
		{"/opt/my ferry/ferry-agent", "/etc/ferry/agent.toml", `ExecStart="/opt/my ferry/ferry-agent" run --config /etc/ferry/agent.toml`},
		{"/opt/ferry/ferry-agent", "/srv/100%/a$b.toml", `ExecStart=/opt/ferry/ferry-agent run --config "/srv/100%%/a$$b.toml"`},
		{"/opt/ferry/ferry-agent", `/srv/"q"\x.toml`, `ExecStart=/opt/ferry/ferry-agent run --config "/srv/\"q\"\\x.toml"`},
	} {
		unit := Agent(tc.bin, tc.cfg)
		if !strings.Contains(unit, "\n"+tc.want+"\n") {
			t.Errorf("Agent(%q, %q): no line %s", tc.bin, tc.cfg, tc.want)
		}
		if strings.Count(unit, "\nExecStart=") != 1 {
			t.Errorf("Agent(%q, %q): not exactly one ExecStart", tc.bin, tc.cfg)
		}
	}
	if g := Gateway("/opt/gw", ""); !strings.Contains(g, "\nExecStart=/opt/gw serve --config /etc/ferry/gateway.toml\n") {
		t.Error("Gateway: ExecStart not replaced")
	}
}
