package adminclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"

	"github.com/ferry-tunnel/ferry/gateway/adminapi"
)

// Client calls the admin API. It is safe for concurrent use.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// New returns a client of the admin API at baseURL (such as
// "http://127.0.0.1:8081") that authenticates with adminToken. hc nil means
// http.DefaultClient.
func New(baseURL, adminToken string, hc *http.Client) *Client {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), token: adminToken, hc: hc}
}

// BaseURL returns the API address the client calls.
func (c *Client) BaseURL() string { return c.base }

// APIError is an error answer of the API.
type APIError struct {
	// Status is the HTTP status code.
	Status int
	// Message is the API's "error" text, or a description of the
	// unexpected answer when it was not the API's JSON.
	Message string
}

// Error returns "admin API: <status> <message>".
func (e *APIError) Error() string {
	return fmt.Sprintf("admin API: %d %s", e.Status, e.Message)
}

// ConnError means the request did not get an HTTP answer: the API is down,
// the address is wrong, or the TLS handshake failed.
type ConnError struct {
	// BaseURL is the API address that was tried.
	BaseURL string
	// Err is the cause.
	Err error
}

// Error returns "cannot reach the admin API at <url>: <short cause>".
func (e *ConnError) Error() string {
	return fmt.Sprintf("cannot reach the admin API at %s: %s", e.BaseURL, shortCause(e.Err))
}

// Unwrap returns the cause.
func (e *ConnError) Unwrap() error { return e.Err }

// shortCause drops the "Get \"url\": dial tcp 1.2.3.4:5:" prefixes that
// repeat what ConnError already says.
func shortCause(err error) string {
	var errno syscall.Errno
	var dns *net.DNSError
	var ue *url.Error
	switch {
	case errors.As(err, &errno):
		return errno.Error()
	case errors.As(err, &dns):
		return dns.Error()
	case errors.As(err, &ue):
		return ue.Err.Error()
	}
	return err.Error()
}

// CreateAgent creates an agent and returns it with its token.
func (c *Client) CreateAgent(ctx context.Context, name, description string) (adminapi.CreatedAgent, error) {
	var out adminapi.CreatedAgent
	err := c.Do(ctx, http.MethodPost, "/api/v1/agents", adminapi.AgentRequest{Name: name, Description: description}, &out)
	return out, err
}

// ListAgents returns all agents, ordered by name.
func (c *Client) ListAgents(ctx context.Context) ([]adminapi.Agent, error) {
	var out []adminapi.Agent
	err := c.Do(ctx, http.MethodGet, "/api/v1/agents", nil, &out)
	return out, err
}

// GetAgent returns one agent.
func (c *Client) GetAgent(ctx context.Context, name string) (adminapi.Agent, error) {
	var out adminapi.Agent
	err := c.Do(ctx, http.MethodGet, "/api/v1/agents/"+url.PathEscape(name), nil, &out)
	return out, err
}

// RotateToken gives the agent a new token and returns it. The old token
// stops working at once and the agent's tunnels are closed.
func (c *Client) RotateToken(ctx context.Context, name string) (string, error) {
	var out adminapi.RotatedToken
	err := c.Do(ctx, http.MethodPost, "/api/v1/agents/"+url.PathEscape(name)+"/token", nil, &out)
	return out.Token, err
}

// DeleteAgent deletes an agent, its API connections and its tunnels.
func (c *Client) DeleteAgent(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/agents/"+url.PathEscape(name), nil, nil)
}

// CreateConnection creates a connection and returns it.
func (c *Client) CreateConnection(ctx context.Context, req adminapi.ConnectionRequest) (adminapi.Connection, error) {
	var out adminapi.Connection
	err := c.Do(ctx, http.MethodPost, "/api/v1/connections", req, &out)
	return out, err
}

// ListConnections returns the connections from the config file and from
// the API, ordered by name.
func (c *Client) ListConnections(ctx context.Context) ([]adminapi.Connection, error) {
	var out []adminapi.Connection
	err := c.Do(ctx, http.MethodGet, "/api/v1/connections", nil, &out)
	return out, err
}

// DeleteConnection deletes a connection created through the API.
func (c *Client) DeleteConnection(ctx context.Context, name string) error {
	return c.Do(ctx, http.MethodDelete, "/api/v1/connections/"+url.PathEscape(name), nil, nil)
}

// Audit returns up to limit audit events, newest first; limit 0 means the
// API's default (100).
func (c *Client) Audit(ctx context.Context, limit int) ([]adminapi.AuditEvent, error) {
	path := "/api/v1/audit"
	if limit != 0 {
		path += "?limit=" + strconv.Itoa(limit)
	}
	var out []adminapi.AuditEvent
	err := c.Do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// maxResponse bounds what the client reads of an answer.
const maxResponse = 32 << 20

// Do sends one request: in, if not nil, is sent as JSON; a successful
// answer's body is decoded into out, if not nil (a *json.RawMessage keeps it
// as is). The typed methods use it; it serves callers that want the raw
// JSON.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("admin API address %q: %w", c.base, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return ctxErr
		}
		return &ConnError{BaseURL: c.base, Err: err}
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return &ConnError{BaseURL: c.base, Err: fmt.Errorf("read answer: %w", err)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return apiError(resp, data)
	}
	if out == nil || resp.StatusCode == http.StatusNoContent {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &APIError{Status: resp.StatusCode, Message: fmt.Sprintf("unexpected answer (%v): is %s the gateway's admin API?", err, c.base)}
	}
	return nil
}

func apiError(resp *http.Response, data []byte) error {
	var e adminapi.ErrorResponse
	if json.Unmarshal(data, &e) == nil && e.Error != "" {
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	msg := http.StatusText(resp.StatusCode)
	if msg == "" {
		msg = "unexpected status"
	}
	return &APIError{Status: resp.StatusCode, Message: msg + " (not an answer of the Ferry admin API: check the address)"}
}
