package test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/internal/testutil"
)

var reBusy = regexp.MustCompile(`msg="connection refused".* result=busy`)

// TestAgentStreamLimit: an agent at [access] max_streams answers busy; the
// client's connection ends at once with a reset, the refusal is counted and
// logged, and a connection is served again once one ends.
func TestAgentStreamLimit(t *testing.T) {
	t.Parallel()
	writer := testutil.NewWriterServer(t)
	const name = "a1"
	g := startGateway(t, gatewayOpts{Connections: []conn{{Name: "firehose", Agent: name, Target: writer.Addr}}})
	tok := g.CreateAgent(t, name)
	a := writeAgentConfig(t, g, agentOpts{Token: tok, HA: 1, Allow: []string{writer.Addr}})
	cfg, err := os.ReadFile(a.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.ConfigPath, bytes.Replace(cfg, []byte("[access]\n"), []byte("[access]\nmax_streams = 2\n"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	a.Start(t)
	a.WaitTunnels(t, 1)
	g.WaitOnline(t, name, 1)

	held := make([]io.ReadCloser, 0, 2)
	for range 2 {
		c := dial(t, g.Conns["firehose"])
		if _, err := io.ReadAtLeast(c, make([]byte, 1024), 1024); err != nil {
			t.Fatalf("connection within the limit: %v", err)
		}
		held = append(held, c)
	}

	over := dial(t, g.Conns["firehose"])
	over.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.Copy(io.Discard, over)
	if n != 0 || !testutil.IsReset(err) {
		t.Fatalf("connection over the limit: read %d bytes, %v; want a reset with no data", n, err)
	}
	// The agent counts the refusal after it has sent it: the client's reset
	// can come first.
	var busy float64
	testutil.Poll(t, 10*time.Second, `ferry_agent_streams_total{result="busy"} counts the refusal`, func() (bool, string) {
		busy = a.Metric(t, "ferry_agent_streams_total", map[string]string{"result": "busy"})
		return busy >= 1, "busy " + ftoa(busy)
	})
	if busy != 1 {
		t.Fatalf(`ferry_agent_streams_total{result="busy"} = %v, want 1`, busy)
	}
	if _, err := g.Proc.Log.WaitFor(reBusy, 5*time.Second); err != nil {
		t.Fatalf("the gateway did not log the refusal: %v", err)
	}

	held[0].Close()
	// The limit counts a stream until its pipe has wholly ended, a moment
	// after the streams_active gauge drops: wait for that count too (/status).
	testutil.Poll(t, 10*time.Second, "a slot frees", func() (bool, string) {
		active := a.Metric(t, "ferry_agent_streams_active", nil)
		n, err := a.StatusStreams()
		if err != nil {
			return false, err.Error()
		}
		return active <= 1 && n <= 1, fmt.Sprintf("gauge streams_active %v, /status streams_active %d", active, n)
	})
	c := dial(t, g.Conns["firehose"])
	if _, err := io.ReadAtLeast(c, make([]byte, 1024), 1024); err != nil {
		t.Fatalf("connection after one ended: %v", err)
	}
}
