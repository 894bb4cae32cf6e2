package systemd

import (
	_ "embed"
	"strings"
)

//go:embed ferry-agent.service
var agentUnit string

//go:embed ferry-gateway.service
var gatewayUnit string

// Default paths in the units, which Agent and Gateway replace.
const (
	AgentBinary   = "/usr/local/bin/ferry-agent"
	AgentConfig   = "/etc/ferry/agent.toml"
	GatewayBinary = "/usr/local/bin/ferry-gateway"
	GatewayConfig = "/etc/ferry/gateway.toml"
)

// Agent returns ferry-agent.service with binary and config in ExecStart
// ("" keeps the defaults AgentBinary and AgentConfig).
func Agent(binary, config string) string {
	return withExecStart(agentUnit, "run", AgentBinary, AgentConfig, binary, config)
}

// Gateway returns ferry-gateway.service with binary and config in
// ExecStart ("" keeps the defaults GatewayBinary and GatewayConfig).
func Gateway(binary, config string) string {
	return withExecStart(gatewayUnit, "serve", GatewayBinary, GatewayConfig, binary, config)
}

func withExecStart(unit, cmd, defBin, defCfg, bin, cfg string) string {
	if bin == "" {
		bin = defBin
	}
	if cfg == "" {
		cfg = defCfg
	}
	old := "\nExecStart=" + defBin + " " + cmd + " --config " + defCfg + "\n"
	return replaceOnce(unit, old, "\nExecStart="+quote(bin)+" "+cmd+" --config "+quote(cfg)+"\n")
}

func replaceOnce(s, old, new string) string {
	i := strings.Index(s, old)
	if i < 0 {
		// The units in this folder always hold the default line; a test
		// keeps it so.
		panic("systemd: unit lacks " + strings.TrimSpace(old))
	}
	return s[:i] + new + s[i+len(old):]
}

// quote writes one ExecStart argument so that systemd reads it back
// unchanged: specifiers (%) and variables ($) escaped, quoted when it holds
// white space. Paths with control characters are for the caller to refuse.
func quote(arg string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, `%`, `%%`, `$`, `$$`)
	q := r.Replace(arg)
	if q != arg || strings.ContainsAny(arg, " \t'") {
		return `"` + q + `"`
	}
	return arg
}
