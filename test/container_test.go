package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/config"
	"github.com/ferry-tunnel/ferry/internal/testutil"
)

// docker runs the docker client for one test.
type docker struct {
	t   *testing.T
	bin string
}

// run runs docker with args and returns its trimmed stdout; stderr goes
// into the error.
func (d docker) run(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.bin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return strings.TrimSpace(string(out)), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(string(out)), nil
}

func (d docker) must(args ...string) string {
	d.t.Helper()
	out, err := d.run(2*time.Minute, args...)
	if err != nil {
		d.t.Fatal(err)
	}
	return out
}

// logs is a container's stdout and stderr.
func (d docker) logs(name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, d.bin, "logs", name).CombinedOutput()
	return string(out)
}

// waitLog polls a container's log until re matches.
func (d docker) waitLog(name string, re *regexp.Regexp, timeout time.Duration) {
	d.t.Helper()
	testutil.Poll(d.t, timeout, name+" logs "+re.String(), func() (bool, string) {
		l := d.logs(name)
		return re.MatchString(l), lastLine(l)
	})
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// TestContainer builds the images with the same script as `make image` and
// runs gateway, agent and a demo target as containers on a private network,
// the agent read-only, without capabilities, as user 65532, configured by
// the environment alone with its token in a mounted file. It proves a TCP
// connection through a gateway connection, the agent's HEALTHCHECK turning
// healthy, and that docker stop drains the agent (an open request still
// completes) before it exits 0.
func TestContainer(t *testing.T) {
	start := time.Now()
	d := docker{t: t, bin: testutil.Docker(t)}
	id := "ferry-e2e-" + randomHex(4)
	tag := id // image tag: unique, so parallel runs do not clash

	out, err := func() ([]byte, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "configs/container/build.sh", tag)
		cmd.Dir = ".."
		return cmd.CombinedOutput()
	}()
	t.Cleanup(func() {
		d.run(time.Minute, "rmi", "ferry-agent:"+tag, "ferry-gateway:"+tag, "ferry-demo-target:"+tag)
	})
	if err != nil {
		t.Fatalf("configs/container/build.sh: %v\n%s", err, out)
	}
	t.Logf("images built in %s", time.Since(start).Round(time.Millisecond))

	d.must("network", "create", "--label", "ferry-e2e", id)
	t.Cleanup(func() { d.run(time.Minute, "network", "rm", id) })
	d.must("volume", "create", "--label", "ferry-e2e", id+"-gw")
	t.Cleanup(func() { d.run(time.Minute, "volume", "rm", "-f", id+"-gw") })
	var containers []string
	t.Cleanup(func() {
		for _, c := range containers {
			if t.Failed() {
				t.Logf("--- docker logs %s\n%s", c, d.logs(c))
			}
		}
		if len(containers) > 0 {
			d.run(time.Minute, append([]string{"rm", "-f", "-v"}, containers...)...)
		}
	})
	runC := func(name string, args ...string) {
		t.Helper()
		containers = append(containers, name)
		d.must(append([]string{"run", "-d", "--name", name, "--network", id,
			"--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"}, args...)...)
	}

	// Files mounted into the containers: readable by user 65532.
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	gwConfig := filepath.Join(dir, "gateway.toml")
	if err := os.WriteFile(gwConfig, []byte(`data_dir = "/var/lib/ferry"
node_id = "gw-container"

[listen]
tunnel = ":8443"
admin = "0.0.0.0:8081"

[tls]
self_signed = true

[[connections]]
name = "demo"
agent = "a1"
target = "target:8080"
listen = "0.0.0.0:15000"
`), 0o644); err != nil {
		t.Fatal(err)
	}

	gw, agent, target := id+"-gateway", id+"-agent", id+"-target"
	runC(target, "--network-alias", "target", "ferry-demo-target:"+tag)
	// The gateway: config from a mounted file, state in a volume (which the
	// agent mounts too, for the self-signed certificate); its hostname is
	// in that certificate.
	runC(gw, "--hostname", "gateway", "--network-alias", "gateway",
		"-v", gwConfig+":/etc/ferry/gateway.toml:ro", "-v", id+"-gw:/var/lib/ferry",
		"-p", "127.0.0.1::15000", "--health-interval", "1s",
		"ferry-gateway:"+tag)
	d.waitLog(gw, regexp.MustCompile(`msg="ferry-gateway started"`), startTimeout)

	created := d.must("exec", gw, "/usr/local/bin/ferry-gateway", "--admin-token-file", "/var/lib/ferry/admin.token", "--json", "agents", "create", "a1")
	var a struct{ Token string }
	if err := json.Unmarshal([]byte(created), &a); err != nil || a.Token == "" {
		t.Fatalf("agents create through docker exec: %v (%d bytes of output)", err, len(created))
	}
	tokenFile := filepath.Join(dir, "agent.token")
	if err := os.WriteFile(tokenFile, []byte(a.Token+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// The agent: no config file, the FERRY_AGENT_* environment only.
	runC(agent, "--user", "65532:65532", "--tmpfs", "/run/ferry",
		"-v", tokenFile+":/run/secrets/ferry-agent-token:ro", "-v", id+"-gw:/gateway:ro",
		"-e", "FERRY_AGENT_GATEWAY_URL=wss://gateway:8443",
		"-e", "FERRY_AGENT_GATEWAY_TOKEN_FILE=/run/secrets/ferry-agent-token",
		"-e", "FERRY_AGENT_GATEWAY_CA_FILE=/gateway/tls/cert.pem",
		"-e", "FERRY_AGENT_ACCESS_ALLOW=target:8080",
		"-e", "FERRY_AGENT_RECONNECT_INITIAL_INTERVAL=200ms",
		"-e", "FERRY_AGENT_RECONNECT_MAX_INTERVAL=2s",
		"-e", "FERRY_AGENT_AGENT_SHUTDOWN_GRACE=20s",
		"--health-interval", "1s", "--health-retries", "2",
		"ferry-agent:"+tag)

	for _, c := range []string{agent, gw} {
		dur := testutil.Poll(t, 30*time.Second, c+" healthy", func() (bool, string) {
			s, err := d.run(time.Minute, "inspect", "-f", "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}", c)
			if err != nil {
				return false, err.Error()
			}
			if strings.HasPrefix(s, "exited") || strings.HasPrefix(s, "dead") {
				t.Fatalf("%s %s:\n%s", c, s, d.logs(c))
			}
			return s == "running healthy", s
		})
		t.Logf("%s healthy after %s", c, dur.Round(time.Millisecond))
	}

	hostPort, _, _ := strings.Cut(d.must("port", gw, "15000/tcp"), "\n")
	t.Logf("connection demo published on %s", hostPort)
	// No keep-alive: an idle connection would count as active in the drain.
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Get("http://" + hostPort + "/")
	if err != nil {
		t.Fatalf("GET through the tunnel: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "hello from demo-target") {
		t.Fatalf("GET through the tunnel: HTTP %d %q", resp.StatusCode, body)
	}

	// A request in flight when docker stop sends SIGTERM: the 100 Continue
	// shows the stream is open end to end; the body follows once the agent
	// is draining, and the answer must still arrive whole.
	c, err := net.DialTimeout("tcp", hostPort, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(40 * time.Second))
	payload := "drain-" + randomHex(8)
	fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: target\r\nConnection: close\r\nExpect: 100-continue\r\nContent-Length: %d\r\n\r\n", len(payload))
	br := bufio.NewReader(c)
	if r, err := http.ReadResponse(br, nil); err != nil || r.StatusCode != http.StatusContinue {
		t.Fatalf("waiting for 100 Continue: %v %v", r, err)
	}
	stopped := make(chan error, 1)
	go func() {
		_, err := d.run(time.Minute, "stop", "-t", "30", agent)
		stopped <- err
	}()
	d.waitLog(agent, regexp.MustCompile(`msg="draining: no new connections" active=1`), 15*time.Second)
	if s, _ := d.run(time.Minute, "inspect", "-f", "{{.State.Running}}", agent); s != "true" {
		t.Fatalf("agent is not running while a connection drains: %s", s)
	}
	io.WriteString(c, payload)
	r, err := http.ReadResponse(br, &http.Request{Method: http.MethodPost})
	if err != nil {
		t.Fatalf("answer during drain: %v", err)
	}
	got, err := io.ReadAll(r.Body)
	c.Close() // the stream ends when both sides have closed (half-close is carried)
	if err != nil || r.StatusCode != http.StatusOK || string(got) != payload {
		t.Fatalf("answer during drain: HTTP %d %q %v, want %q", r.StatusCode, got, err, payload)
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(40 * time.Second):
		t.Fatal("docker stop did not return")
	}
	if code := d.must("inspect", "-f", "{{.State.ExitCode}}", agent); code != "0" {
		t.Fatalf("agent exit code %s after docker stop, want 0", code)
	}
	logs := d.logs(agent)
	for _, want := range []string{`msg="ferry-agent stopped"`, "target=target:8080 result=ok"} {
		if !strings.Contains(logs, want) {
			t.Errorf("agent log lacks %s", want)
		}
	}
	if strings.Contains(logs, "shutdown grace expired") {
		t.Error("agent reset connections instead of draining them")
	}
	for _, cn := range []string{agent, gw} {
		if strings.Contains(d.logs(cn), a.Token) {
			t.Errorf("%s log holds the agent token", cn)
		}
	}
	t.Logf("container test done in %s", time.Since(start).Round(time.Millisecond))
}

// TestContainerConfigs checks configs/compose.yaml with docker-compose and
// the Kubernetes manifests structurally (YAML read by python3's yaml module,
// checked here): the images are the ones `make image` builds, everything
// runs read-only as 65532 without capabilities, and the agent's config in
// the ConfigMap loads.
func TestContainerConfigs(t *testing.T) {
	t.Parallel()
	script, err := os.ReadFile("../configs/container/build.sh")
	if err != nil {
		t.Fatal(err)
	}
	images := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^image (ferry-[a-z-]+) `).FindAllStringSubmatch(string(script), -1) {
		images[m[1]] = true
	}
	if len(images) != 3 {
		t.Fatalf("build.sh builds %v, want three images", images)
	}
	checkImage := func(where, ref string) {
		name, tag, _ := strings.Cut(ref, ":")
		if !images[name] || tag == "" {
			t.Errorf("%s: image %q is not one `make image` builds (%v) with a tag", where, ref, images)
		}
	}

	t.Run("compose", func(t *testing.T) {
		compose := testutil.Tool(t, "docker-compose", "it validates configs/compose.yaml")
		cmd := exec.Command(compose, "-f", "../configs/compose.yaml", "config", "-q")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("docker-compose config -q: %v\n%s", err, out)
		}
		docs := yamlDocs(t, "../configs/compose.yaml")
		services, _ := dig(docs[0], "services").(map[string]any)
		for _, name := range []string{"gateway", "agent", "target"} {
			s, _ := services[name].(map[string]any)
			if s == nil {
				t.Errorf("compose: no service %s", name)
				continue
			}
			checkImage("compose "+name, fmt.Sprint(s["image"]))
			if s["read_only"] != true || s["user"] != "65532:65532" || fmt.Sprint(s["cap_drop"]) != "[ALL]" {
				t.Errorf("compose %s: read_only=%v user=%v cap_drop=%v", name, s["read_only"], s["user"], s["cap_drop"])
			}
		}
		ag, _ := services["agent"].(map[string]any)
		if fmt.Sprint(dig(ag, "tmpfs")) != "[/run/ferry]" || len(fmt.Sprint(dig(ag, "secrets"))) < 3 ||
			!strings.HasPrefix(fmt.Sprint(dig(ag, "environment", "FERRY_AGENT_GATEWAY_TOKEN_FILE")), "/run/secrets/") {
			t.Errorf("compose agent: tmpfs %v, secrets %v, token file %v", dig(ag, "tmpfs"), dig(ag, "secrets"), dig(ag, "environment", "FERRY_AGENT_GATEWAY_TOKEN_FILE"))
		}
		for name, s := range services {
			ports, _ := dig(s, "ports").([]any)
			for _, p := range ports {
				if !strings.HasPrefix(fmt.Sprint(p), "127.0.0.1:") {
					t.Errorf("compose %s publishes %v beyond 127.0.0.1", name, p)
				}
			}
		}
	})

	t.Run("kubernetes", func(t *testing.T) {
		docs := yamlDocs(t, "../configs/kubernetes/agent.yaml")
		byKind := map[string]map[string]any{}
		for _, doc := range docs {
			byKind[fmt.Sprint(doc["kind"])] = doc
		}
		cm, dep, pdb := byKind["ConfigMap"], byKind["Deployment"], byKind["PodDisruptionBudget"]
		if cm == nil || dep == nil || pdb == nil {
			t.Fatalf("agent.yaml kinds: %v", byKind)
		}
		cfg, err := config.ParseAgent([]byte(fmt.Sprint(dig(cm, "data", "agent.toml"))), "ConfigMap agent.toml")
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Metrics.Listen != "0.0.0.0:9464" {
			t.Errorf("ConfigMap metrics.listen = %q: probes from the kubelet need 0.0.0.0:9464", cfg.Metrics.Listen)
		}
		if dig(dep, "spec", "replicas") != 2 {
			t.Errorf("replicas = %v, want 2", dig(dep, "spec", "replicas"))
		}
		pod := dig(dep, "spec", "template", "spec").(map[string]any)
		grace, _ := pod["terminationGracePeriodSeconds"].(int)
		if time.Duration(grace)*time.Second <= cfg.Agent.ShutdownGrace {
			t.Errorf("terminationGracePeriodSeconds %d must exceed shutdown_grace %s", grace, cfg.Agent.ShutdownGrace)
		}
		if dig(pod, "securityContext", "runAsNonRoot") != true || dig(pod, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
			t.Errorf("pod securityContext: %v", pod["securityContext"])
		}
		ctr := dig(pod, "containers").([]any)[0].(map[string]any)
		checkImage("Deployment", fmt.Sprint(ctr["image"]))
		sc := ctr["securityContext"]
		if dig(sc, "readOnlyRootFilesystem") != true || dig(sc, "allowPrivilegeEscalation") != false || fmt.Sprint(dig(sc, "capabilities", "drop")) != "[ALL]" {
			t.Errorf("container securityContext: %v", sc)
		}
		if dig(ctr, "readinessProbe", "httpGet", "path") != "/readyz" || dig(ctr, "livenessProbe", "httpGet", "path") != "/healthz" {
			t.Errorf("probes: readiness %v liveness %v", ctr["readinessProbe"], ctr["livenessProbe"])
		}
		mounts := fmt.Sprint(ctr["volumeMounts"])
		vols := fmt.Sprint(pod["volumes"])
		if !strings.Contains(mounts, "/run/ferry") || !strings.Contains(vols, "secret:") || !strings.Contains(vols, "ferry-agent-token") {
			t.Errorf("volumes: mounts %s, volumes %s", mounts, vols)
		}
		if !strings.Contains(fmt.Sprint(cfg.Gateway.TokenFile), "/etc/ferry/") {
			t.Errorf("ConfigMap token_file = %q, want the mounted Secret", cfg.Gateway.TokenFile)
		}
		if dig(pdb, "spec", "minAvailable") != 1 || fmt.Sprint(dig(pdb, "spec", "selector", "matchLabels")) != fmt.Sprint(dig(dep, "spec", "template", "metadata", "labels")) {
			t.Errorf("PodDisruptionBudget: %v", pdb["spec"])
		}
		if s := yamlDocs(t, "../configs/kubernetes/secret.example.yaml"); s[0]["kind"] != "Secret" || dig(s[0], "metadata", "name") != "ferry-agent-token" {
			t.Errorf("secret.example.yaml: %v", s[0])
		}
	})
}

// yamlDocs reads every document of a YAML file through python3's yaml
// module (no YAML module in go.mod), as JSON. JSON numbers that are whole
// come back as int.
func yamlDocs(t *testing.T, path string) []map[string]any {
	t.Helper()
	py := testutil.Tool(t, "python3", "it reads the YAML manifests")
	out, err := exec.Command(py, "-c", `import json, sys
try:
    import yaml
except ImportError:
    print("NO-YAML-MODULE"); sys.exit(3)
print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))`, path).Output()
	if strings.Contains(string(out), "NO-YAML-MODULE") {
		t.Skip("python3 has no yaml module (Debian: python3-yaml)")
	}
	if err != nil {
		t.Fatalf("%s: not valid YAML: %v", path, err)
	}
	var docs []map[string]any
	dec := json.NewDecoder(strings.NewReader(string(out)))
	dec.UseNumber()
	if err := dec.Decode(&docs); err != nil {
		t.Fatal(err)
	}
	for _, doc := range docs {
		intify(doc)
	}
	return docs
}

// intify turns whole json.Numbers into ints, in place.
func intify(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = intify(e)
		}
	case []any:
		for i, e := range x {
			x[i] = intify(e)
		}
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return int(n)
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

// dig follows map keys; nil when one is missing.
func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}
