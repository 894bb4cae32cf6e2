package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ferry-tunnel/ferry/gateway/adminapi"
	"github.com/ferry-tunnel/ferry/gateway/adminclient"
)

// Usage lists the admin commands and their flags, one indented line per
// command, to follow a "usage:" line and the serve line that cmd prints.
const Usage = `  ferry-gateway agents create NAME [--description TEXT]
        create an agent and print its token (shown only once)
  ferry-gateway agents list
        list agents and whether they are online
  ferry-gateway agents show NAME
        show an agent and its live tunnels
  ferry-gateway agents token NAME
        give an agent a new token; the old one stops working at once
        and the agent's tunnels are closed
  ferry-gateway agents delete NAME
        delete an agent, its API connections and its tunnels
  ferry-gateway connections create NAME --agent AGENT --target HOST:PORT --listen ADDR
        listen on ADDR and carry each connection through AGENT to HOST:PORT
  ferry-gateway connections list
        list connections (from the config file and the API)
  ferry-gateway connections delete NAME
        delete a connection created through the API
  ferry-gateway audit [--limit N]
        show the newest audit events (default 100, at most 1000)
  ferry-gateway version
        print the version

The admin commands call the admin API of a running "ferry-gateway serve".
Their flags may come before or after the command words:
  --api URL                admin API address (default: $FERRY_API, else ` + DefaultAPI + `)
  --admin-token-file PATH  read the admin token from PATH (default: $FERRY_ADMIN_TOKEN)
  --json                   print the API's JSON instead of tables
`

// helpText is what "help" prints: cmd's usage header and Usage.
const helpText = "usage:\n  ferry-gateway serve --config FILE\n" + Usage

// DefaultAPI is the admin API address used when neither --api nor FERRY_API
// is set; it matches the default [listen] admin address.
const DefaultAPI = "http://127.0.0.1:8081"

// ErrUsage matches (errors.Is) every error that Run returns for bad usage:
// an unknown command or flag, a missing or extra argument.
var ErrUsage = errors.New("usage error")

type usageError struct{ msg string }

func (e *usageError) Error() string        { return e.msg }
func (e *usageError) Is(target error) bool { return target == ErrUsage }

func usagef(format string, args ...any) error {
	return &usageError{msg: fmt.Sprintf(format, args...)}
}

// requestTimeout bounds each API call, so a hung gateway does not hang the
// CLI.
const requestTimeout = 30 * time.Second

// flag names, and whether each takes a value.
var knownFlags = map[string]bool{
	"api": true, "admin-token-file": true, "json": false, "help": false, "h": false,
	"description": true, "agent": true, "target": true, "listen": true, "limit": true,
}

// Run runs one admin command. args excludes the program name, e.g.
// ["agents", "list", "--json"]. env looks up environment variables
// (os.Getenv in production). Results go to stdout; stderr is unused today
// but reserved for warnings. Cancelling ctx abandons the API call.
func Run(ctx context.Context, args []string, env func(string) string, stdout, stderr io.Writer) error {
	words, flags, err := parse(args)
	if err != nil {
		return err
	}
	if flags["help"] != "" || flags["h"] != "" || (len(words) > 0 && words[0] == "help") {
		_, err := io.WriteString(stdout, helpText)
		return err
	}
	cmd, err := lookup(words, flags)
	if err != nil {
		return err
	}
	r, err := newRunner(flags, env, stdout)
	if err != nil {
		return err
	}
	defer r.close()
	if err := cmd.run(ctx, r, words[len(cmd.words):], flags); err != nil {
		return r.explain(ctx, err)
	}
	return nil
}

// parse splits args into command words and flags (by name, without dashes).
// Flags may come anywhere; "--" ends them.
func parse(args []string) (words []string, flags map[string]string, err error) {
	flags = map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			words = append(words, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			words = append(words, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-"), "=")
		takesValue, ok := knownFlags[name]
		if !ok {
			return nil, nil, usagef("unknown flag %s", a)
		}
		if _, dup := flags[name]; dup {
			return nil, nil, usagef("flag --%s given twice", name)
		}
		switch {
		case takesValue && !hasVal:
			if i+1 >= len(args) {
				return nil, nil, usagef("flag --%s needs a value", name)
			}
			i++
			val = args[i]
		case !takesValue && hasVal:
			b, err := strconv.ParseBool(val)
			if err != nil {
				return nil, nil, usagef("flag --%s takes no value (or true/false), not %q", name, val)
			}
			if !b {
				continue
			}
			val = "true"
		case !takesValue:
			val = "true"
		}
		flags[name] = val
	}
	return words, flags, nil
}

// command is one admin command.
type command struct {
	words []string
	args  []string // names of the positional arguments
	flags []string // command flags besides the global ones
	run   func(ctx context.Context, r *runner, args []string, flags map[string]string) error
}

var globalFlags = []string{"api", "admin-token-file", "json"}

func commands() []command {
	return []command{
		{words: []string{"agents", "create"}, args: []string{"NAME"}, flags: []string{"description"}, run: agentsCreate},
		{words: []string{"agents", "list"}, run: agentsList},
		{words: []string{"agents", "show"}, args: []string{"NAME"}, run: agentsShow},
		{words: []string{"agents", "token"}, args: []string{"NAME"}, run: agentsToken},
		{words: []string{"agents", "delete"}, args: []string{"NAME"}, run: agentsDelete},
		{words: []string{"connections", "create"}, args: []string{"NAME"}, flags: []string{"agent", "target", "listen"}, run: connectionsCreate},
		{words: []string{"connections", "list"}, run: connectionsList},
		{words: []string{"connections", "delete"}, args: []string{"NAME"}, run: connectionsDelete},
		{words: []string{"audit"}, flags: []string{"limit"}, run: audit},
	}
}

func lookup(words []string, flags map[string]string) (command, error) {
	if len(words) == 0 {
		return command{}, usagef("missing command")
	}
	var group []string
	for _, c := range commands() {
		if c.words[0] != words[0] {
			continue
		}
		if len(c.words) > 1 {
			group = append(group, c.words[1])
			if len(words) < 2 || words[1] != c.words[1] {
				continue
			}
		}
		name := strings.Join(c.words, " ")
		rest := words[len(c.words):]
		if len(rest) < len(c.args) {
			return command{}, usagef("%s: missing %s", name, strings.Join(c.args[len(rest):], " "))
		}
		if len(rest) > len(c.args) {
			return command{}, usagef("%s: unexpected argument %q", name, rest[len(c.args)])
		}
		for f := range flags {
			if !contains(globalFlags, f) && !contains(c.flags, f) {
				return command{}, usagef("%s: flag --%s does not apply", name, f)
			}
		}
		return c, nil
	}
	if group != nil {
		if len(words) < 2 {
			return command{}, usagef("%s: missing subcommand (%s)", words[0], strings.Join(group, ", "))
		}
		return command{}, usagef("%s: unknown subcommand %q (use %s)", words[0], words[1], strings.Join(group, ", "))
	}
	return command{}, usagef("unknown command %q", words[0])
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// runner holds what every command uses.
type runner struct {
	client    *adminclient.Client
	transport *http.Transport
	json      bool
	out       io.Writer
	tokenFrom string // for error hints
}

func newRunner(flags map[string]string, env func(string) string, out io.Writer) (*runner, error) {
	api := flags["api"]
	if api == "" {
		api = env("FERRY_API")
	}
	if api == "" {
		api = DefaultAPI
	}
	u, err := url.Parse(api)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("invalid admin API address %q: want http://HOST:PORT or https://HOST:PORT (set --api or FERRY_API)", api)
	}

	var token, tokenFrom string
	if path := flags["admin-token-file"]; path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read admin token: %w", err)
		}
		token, tokenFrom = strings.TrimSpace(string(b)), "check the admin token in "+path
		if token == "" {
			return nil, fmt.Errorf("admin token file %s is empty", path)
		}
	} else {
		token, tokenFrom = strings.TrimSpace(env("FERRY_ADMIN_TOKEN")), "set FERRY_ADMIN_TOKEN"
		if token == "" {
			return nil, errors.New("no admin token: set FERRY_ADMIN_TOKEN or pass --admin-token-file PATH")
		}
	}

	// A transport of our own, so that closing it leaves no idle
	// connections behind when Run returns.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	hc := &http.Client{Transport: tr, Timeout: requestTimeout}
	return &runner{
		client:    adminclient.New(api, token, hc),
		transport: tr,
		json:      flags["json"] != "",
		out:       out,
		tokenFrom: tokenFrom,
	}, nil
}

func (r *runner) close() { r.transport.CloseIdleConnections() }

// explain adds to an API or connection error what the operator can do.
func (r *runner) explain(ctx context.Context, err error) error {
	var ce *adminclient.ConnError
	var ae *adminclient.APIError
	switch {
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return fmt.Errorf("interrupted: %w", err)
	case errors.As(err, &ce):
		return fmt.Errorf("%w (is ferry-gateway serve running? set --api or FERRY_API)", err)
	case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
		return fmt.Errorf("%w (%s)", err, r.tokenFrom)
	}
	return err
}

// raw calls the API and prints its JSON, indented.
func (r *runner) raw(ctx context.Context, method, path string, body any) error {
	var msg json.RawMessage
	if err := r.client.Do(ctx, method, path, body, &msg); err != nil {
		return err
	}
	if len(msg) == 0 {
		return nil
	}
	b, err := json.MarshalIndent(msg, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(r.out, "%s\n", b)
	return err
}

func (r *runner) printf(format string, args ...any) {
	fmt.Fprintf(r.out, format, args...)
}

func (r *runner) table() *tabwriter.Writer {
	return tabwriter.NewWriter(r.out, 0, 0, 2, ' ', 0)
}

func agentPath(name string) string { return "/api/v1/agents/" + url.PathEscape(name) }

const tokenAdvice = "This token is shown only once. Give it to the agent: put it in the file named by token_file in its config (e.g. /etc/ferry/agent.token) or set FERRY_AGENT_TOKEN."

func agentsCreate(ctx context.Context, r *runner, args []string, flags map[string]string) error {
	name, desc := args[0], flags["description"]
	if r.json {
		return r.raw(ctx, http.MethodPost, "/api/v1/agents", adminapi.AgentRequest{Name: name, Description: desc})
	}
	a, err := r.client.CreateAgent(ctx, name, desc)
	if err != nil {
		return err
	}
	r.printf("agent %q created\ntoken: %s\n%s\n", a.Name, a.Token, tokenAdvice)
	return nil
}

func agentsList(ctx context.Context, r *runner, _ []string, _ map[string]string) error {
	if r.json {
		return r.raw(ctx, http.MethodGet, "/api/v1/agents", nil)
	}
	agents, err := r.client.ListAgents(ctx)
	if err != nil {
		return err
	}
	if len(agents) == 0 {
		r.printf("no agents (create one with: ferry-gateway agents create NAME)\n")
		return nil
	}
	tw := r.table()
	fmt.Fprintln(tw, "NAME\tONLINE\tTUNNELS\tCREATED\tDESCRIPTION")
	for _, a := range agents {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", a.Name, yesNo(a.Online), len(a.Tunnels), when(a.CreatedAt), a.Description)
	}
	return tw.Flush()
}

func agentsShow(ctx context.Context, r *runner, args []string, _ map[string]string) error {
	if r.json {
		return r.raw(ctx, http.MethodGet, agentPath(args[0]), nil)
	}
	a, err := r.client.GetAgent(ctx, args[0])
	if err != nil {
		return err
	}
	tw := r.table()
	fmt.Fprintf(tw, "name:\t%s\n", a.Name)
	fmt.Fprintf(tw, "description:\t%s\n", a.Description)
	fmt.Fprintf(tw, "created:\t%s\n", when(a.CreatedAt))
	fmt.Fprintf(tw, "token rotated:\t%s\n", when(a.TokenRotatedAt))
	fmt.Fprintf(tw, "online:\t%s (%d tunnels)\n", yesNo(a.Online), len(a.Tunnels))
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(a.Tunnels) == 0 {
		return nil
	}
	r.printf("\n")
	tw = r.table()
	fmt.Fprintln(tw, "NODE\tREMOTE ADDRESS\tVERSION\tHOSTNAME\tINSTANCE\tOS\tCONNECTED\tDRAINING")
	for _, t := range a.Tunnels {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.Node, t.RemoteAddr, t.Version, t.Hostname, t.Instance, t.OS, when(t.ConnectedAt), yesNo(t.Draining))
	}
	return tw.Flush()
}

func agentsToken(ctx context.Context, r *runner, args []string, _ map[string]string) error {
	if r.json {
		return r.raw(ctx, http.MethodPost, agentPath(args[0])+"/token", nil)
	}
	token, err := r.client.RotateToken(ctx, args[0])
	if err != nil {
		return err
	}
	r.printf("new token for agent %q\ntoken: %s\nThe old token no longer works and the agent's tunnels were closed.\n%s\n", args[0], token, tokenAdvice)
	return nil
}

func agentsDelete(ctx context.Context, r *runner, args []string, _ map[string]string) error {
	if r.json {
		return r.raw(ctx, http.MethodDelete, agentPath(args[0]), nil)
	}
	if err := r.client.DeleteAgent(ctx, args[0]); err != nil {
		return err
	}
	r.printf("agent %q deleted (its tunnels were closed and its API connections deleted)\n", args[0])
	return nil
}

func connectionsCreate(ctx context.Context, r *runner, args []string, flags map[string]string) error {
	req := adminapi.ConnectionRequest{Name: args[0], Agent: flags["agent"], Target: flags["target"], Listen: flags["listen"]}
	for _, f := range []struct{ name, val string }{{"agent", req.Agent}, {"target", req.Target}, {"listen", req.Listen}} {
		if f.val == "" {
			return usagef("connections create: missing --%s", f.name)
		}
	}
	if r.json {
		return r.raw(ctx, http.MethodPost, "/api/v1/connections", req)
	}
	c, err := r.client.CreateConnection(ctx, req)
	if err != nil {
		return err
	}
	r.printf("connection %q created: %s -> agent %s -> %s\n", c.Name, c.Listen, c.Agent, c.Target)
	return nil
}

func connectionsList(ctx context.Context, r *runner, _ []string, _ map[string]string) error {
	if r.json {
		return r.raw(ctx, http.MethodGet, "/api/v1/connections", nil)
	}
	conns, err := r.client.ListConnections(ctx)
	if err != nil {
		return err
	}
	if len(conns) == 0 {
		r.printf("no connections\n")
		return nil
	}
	tw := r.table()
	fmt.Fprintln(tw, "NAME\tAGENT\tTARGET\tLISTEN\tSOURCE\tCREATED")
	for _, c := range conns {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.Name, c.Agent, c.Target, c.Listen, c.Source, when(c.CreatedAt))
	}
	return tw.Flush()
}

func connectionsDelete(ctx context.Context, r *runner, args []string, _ map[string]string) error {
	if r.json {
		return r.raw(ctx, http.MethodDelete, "/api/v1/connections/"+url.PathEscape(args[0]), nil)
	}
	if err := r.client.DeleteConnection(ctx, args[0]); err != nil {
		return err
	}
	r.printf("connection %q deleted\n", args[0])
	return nil
}

func audit(ctx context.Context, r *runner, _ []string, flags map[string]string) error {
	limit := 0
	if s := flags["limit"]; s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			return usagef("audit: --limit must be a positive number, not %q", s)
		}
		limit = n
	}
	if r.json {
		path := "/api/v1/audit"
		if limit > 0 {
			path += "?limit=" + strconv.Itoa(limit)
		}
		return r.raw(ctx, http.MethodGet, path, nil)
	}
	events, err := r.client.Audit(ctx, limit)
	if err != nil {
		return err
	}
	if len(events) == 0 {
		r.printf("no audit events\n")
		return nil
	}
	tw := r.table()
	fmt.Fprintln(tw, "TIME\tACTOR\tACTION\tSUBJECT\tDETAIL")
	for _, e := range events {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", when(e.At), e.Actor, e.Action, e.Subject, e.Detail)
	}
	return tw.Flush()
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// when formats a time for tables; "-" for none.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
