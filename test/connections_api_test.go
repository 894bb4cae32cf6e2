package test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/ferry-tunnel/ferry/gateway/adminapi"
	"github.com/ferry-tunnel/ferry/gateway/adminclient"
	"github.com/ferry-tunnel/ferry/internal/testutil"
)

// uniqueLoopback is a listen address no other test uses: a random address
// in 127.0.0.0/8 (all of it is loopback on Linux) with a fixed port, so no
// free port has to be guessed.
func uniqueLoopback() string {
	return fmt.Sprintf("127.%d.%d.%d:15432", 10+rand.IntN(200), rand.IntN(256), 2+rand.IntN(250))
}

// TestConnectionsThroughAPI: a connection created through the admin API
// listens at once, is stored and comes back after a gateway restart, and
// stops listening when deleted; static connections cannot be deleted.
func TestConnectionsThroughAPI(t *testing.T) {
	t.Parallel()
	echo := testutil.NewEchoServer(t)
	s := newStack(t, map[string]string{"static": echo.Addr}, []string{echo.Addr})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	listen := uniqueLoopback()
	c, err := s.GW.API.CreateConnection(ctx, adminapi.ConnectionRequest{Name: "erp-db", Agent: s.Name, Target: echo.Addr, Listen: listen})
	if err != nil {
		t.Fatalf("create connection: %v", err)
	}
	if c.Listen != listen {
		t.Fatalf("created %+v", c)
	}
	checkEcho(t, listen)

	var apiErr *adminclient.APIError
	if _, err := s.GW.API.CreateConnection(ctx, adminapi.ConnectionRequest{Name: "erp-db", Agent: s.Name, Target: echo.Addr, Listen: uniqueLoopback()}); !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict {
		t.Fatalf("duplicate name: %v, want 409", err)
	}
	if _, err := s.GW.API.CreateConnection(ctx, adminapi.ConnectionRequest{Name: "other", Agent: "nobody", Target: echo.Addr, Listen: uniqueLoopback()}); !errors.As(err, &apiErr) || apiErr.Status != http.StatusNotFound {
		t.Fatalf("unknown agent: %v, want 404", err)
	}
	if err := s.GW.API.DeleteConnection(ctx, "static"); !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict {
		t.Fatalf("delete static connection: %v, want 409", err)
	}

	// Restart: the stored connection comes back on its own.
	if code := s.GW.Proc.Stop(); code != 0 {
		t.Fatalf("gateway exited %d on SIGTERM", code)
	}
	o := s.GW.Opts
	o.Tunnel, o.Admin = s.GW.TunnelAddr, s.GW.AdminAddr
	o.Connections[0].Listen = s.GW.Conns["static"]
	g2 := startGateway(t, o)
	s.Agent.WaitTunnels(t, 2)
	g2.WaitOnline(t, s.Name, 1)
	checkEcho(t, listen)
	list, err := g2.API.ListConnections(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("list after restart: %+v, %v", list, err)
	}

	if err := g2.API.DeleteConnection(ctx, "erp-db"); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if c, err := net.DialTimeout("tcp", listen, 2*time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after the connection was deleted", listen)
	}
	checkEcho(t, g2.Conns["static"])
}
