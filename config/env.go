package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"reflect"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Prefixes of the environment variables that override config keys. A key
// key in table section is set by PREFIX + SECTION + "_" + KEY, upper-cased
// (FERRY_AGENT_GATEWAY_URL is [gateway] url of the agent); a top-level key
// by PREFIX + KEY (FERRY_GATEWAY_DATA_DIR). Lists are comma-separated.
// [[connections]] of the gateway cannot be set this way.
const (
	EnvAgentPrefix   = "FERRY_AGENT_"
	EnvGatewayPrefix = "FERRY_GATEWAY_"
)

// DefaultAgentPath is the config file ferry-agent reads without --config:
// /etc/ferry/agent.toml, or %ProgramData%\Ferry\agent.toml on Windows.
func DefaultAgentPath() string {
	if runtime.GOOS == "windows" {
		return os.ExpandEnv(`${ProgramData}\Ferry\agent.toml`)
	}
	return "/etc/ferry/agent.toml"
}

// DefaultGatewayPath is the config file ferry-gateway reads without
// --config.
func DefaultGatewayPath() string { return "/etc/ferry/gateway.toml" }

// ReadAgent is [LoadAgent] without the token check: for commands that only
// need the settings, such as a health check. Like LoadAgent it applies the
// FERRY_AGENT_* environment over the file, and runs without a file when
// path is [DefaultAgentPath], that file does not exist, and at least one
// FERRY_AGENT_<SECTION>_<KEY> variable is set.
func ReadAgent(path string) (*Agent, error) {
	a, _, err := readAgent(path, os.LookupEnv)
	return a, err
}

// ReadGateway is [LoadGateway] without the admin token check, with the same
// environment rules as [ReadAgent] (FERRY_GATEWAY_*, [DefaultGatewayPath]).
func ReadGateway(path string) (*Gateway, error) {
	g, _, err := readGateway(path, os.LookupEnv)
	return g, err
}

// readAgent reads and parses the agent config with the environment applied.
// name is what errors about the result should be prefixed with.
func readAgent(path string, lookup lookupFunc) (a *Agent, name string, err error) {
	data, name, err := readConfig("agent", path, DefaultAgentPath(), EnvAgentPrefix, reflect.TypeFor[Agent](), lookup)
	if err != nil {
		return nil, "", err
	}
	a, err = parseAgent(data, name, lookup)
	return a, name, err
}

func readGateway(path string, lookup lookupFunc) (g *Gateway, name string, err error) {
	data, name, err := readConfig("gateway", path, DefaultGatewayPath(), EnvGatewayPrefix, reflect.TypeFor[Gateway](), lookup)
	if err != nil {
		return nil, "", err
	}
	g, err = parseGateway(data, name, lookup)
	return g, name, err
}

// readConfig returns the config file's contents, or none when the default
// file is absent and the environment configures the program instead.
func readConfig(what, path, defaultPath, prefix string, t reflect.Type, lookup lookupFunc) ([]byte, string, error) {
	data, err := os.ReadFile(path)
	if err == nil {
		return data, path, nil
	}
	if errors.Is(err, fs.ErrNotExist) && path == defaultPath {
		for _, v := range envVars(t, prefix) {
			if _, ok := lookup(v.Name); ok {
				return nil, fmt.Sprintf("%s* environment (no file %s)", prefix, path), nil
			}
		}
		return nil, "", fmt.Errorf("read %s config: %w (give --config, or set %s<SECTION>_<KEY> environment variables)", what, err, prefix)
	}
	return nil, "", fmt.Errorf("read %s config: %w", what, err)
}

// lookupFunc is os.LookupEnv or a stand-in for it.
type lookupFunc func(string) (string, bool)

// envLookup turns a getenv function into a lookupFunc; nil means
// os.LookupEnv. Through getenv, a variable set to "" counts as unset.
func envLookup(getenv func(string) string) lookupFunc {
	if getenv == nil {
		return os.LookupEnv
	}
	return func(k string) (string, bool) {
		v := getenv(k)
		return v, v != ""
	}
}

// EnvVar is one environment variable that overrides a config key.
type EnvVar struct {
	// Name is the variable, such as FERRY_AGENT_GATEWAY_URL.
	Name string
	// Key is the config key as TOML spells it, such as gateway.url.
	Key string

	index []int
	typ   reflect.Type
}

// AgentEnvVars lists the variables that override agent config keys, in the
// order of the config struct.
func AgentEnvVars() []EnvVar { return envVars(reflect.TypeFor[Agent](), EnvAgentPrefix) }

// GatewayEnvVars lists the variables that override gateway config keys.
func GatewayEnvVars() []EnvVar { return envVars(reflect.TypeFor[Gateway](), EnvGatewayPrefix) }

// envVars walks the toml tags of the config struct t. Tables recurse;
// arrays of tables ([[connections]]) and keys of types an environment
// string cannot express are left out.
func envVars(t reflect.Type, prefix string) []EnvVar {
	var out []EnvVar
	var walk func(t reflect.Type, key string, index []int)
	walk = func(t reflect.Type, key string, index []int) {
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
			if !f.IsExported() || name == "-" || name == "" {
				continue
			}
			k := name
			if key != "" {
				k = key + "." + name
			}
			idx := append(append([]int(nil), index...), i)
			switch {
			case f.Type.Kind() == reflect.Struct:
				walk(f.Type, k, idx)
			case envSettable(f.Type):
				out = append(out, EnvVar{
					Name:  prefix + strings.ToUpper(strings.ReplaceAll(k, ".", "_")),
					Key:   k,
					index: idx,
					typ:   f.Type,
				})
			}
		}
	}
	walk(t, "", nil)
	return out
}

func envSettable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.String, reflect.Bool,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	case reflect.Slice:
		return t.Elem().Kind() == reflect.String
	}
	return false
}

// applyEnv sets the fields of *v (a config struct) whose variable lookup
// finds, and returns which keys it set (key → variable). A variable set to
// "" sets a string to "" and a list to empty; for other types it is an
// error. Errors name the variable and the key but never quote the value: a
// misplaced secret must not end up in a log.
func applyEnv(v any, prefix string, lookup lookupFunc) (map[string]string, error) {
	if lookup == nil {
		return nil, nil
	}
	rv := reflect.ValueOf(v).Elem()
	applied := map[string]string{}
	var errs []error
	for _, e := range envVars(rv.Type(), prefix) {
		raw, ok := lookup(e.Name)
		if !ok {
			continue
		}
		if err := setFromEnv(rv.FieldByIndex(e.index), raw); err != nil {
			errs = append(errs, fmt.Errorf("environment variable %s (%s): %w", e.Name, e.Key, err))
			continue
		}
		applied[e.Key] = e.Name
	}
	return applied, errors.Join(errs...)
}

var durationKind = reflect.TypeFor[time.Duration]()

// setFromEnv parses raw into f by f's type.
func setFromEnv(f reflect.Value, raw string) error {
	if f.Kind() == reflect.String {
		f.SetString(raw)
		return nil
	}
	if f.Kind() == reflect.Slice {
		items := []string{}
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		f.Set(reflect.ValueOf(items).Convert(f.Type()))
		return nil
	}
	s := strings.TrimSpace(raw)
	if s == "" {
		return errors.New("set but empty; unset it to keep the default")
	}
	switch {
	case f.Type() == durationKind:
		d, err := time.ParseDuration(s)
		if err != nil {
			return errors.New(`want a duration with a unit, such as "30s", "500ms" or "5m"`)
		}
		f.SetInt(int64(d))
	case f.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("want true or false")
		}
		f.SetBool(b)
	case f.CanInt():
		n, err := strconv.ParseInt(s, 10, f.Type().Bits())
		if err != nil {
			return numErr(err, "an integer")
		}
		f.SetInt(n)
	case f.CanUint():
		n, err := strconv.ParseUint(s, 10, f.Type().Bits())
		if err != nil {
			return numErr(err, "a non-negative integer")
		}
		f.SetUint(n)
	case f.CanFloat():
		n, err := strconv.ParseFloat(s, f.Type().Bits())
		if err != nil {
			return numErr(err, "a number")
		}
		f.SetFloat(n)
	default:
		return fmt.Errorf("type %s cannot be set from the environment", f.Type())
	}
	return nil
}

func numErr(err error, want string) error {
	if errors.Is(err, strconv.ErrRange) {
		return fmt.Errorf("want %s: out of range", want)
	}
	return fmt.Errorf("want %s", want)
}

// envErrors prefixes each of the (possibly joined) validation errors with
// the variable that set the key it is about, or else with name.
func envErrors(name string, err error, applied map[string]string) error {
	if err == nil || len(applied) == 0 {
		return inFile(name, err)
	}
	keys := make([]string, 0, len(applied))
	for k := range applied {
		keys = append(keys, k)
	}
	// Longest first, so that gateway.keepalive_timeout is not taken for a
	// shorter key it starts with.
	sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = fmt.Errorf("%s: %w", envSource(e.Error(), keys, applied, name), e)
	}
	return errors.Join(out...)
}

// envSource returns the variable that set the key msg starts with, else one
// that set a key msg mentions ("must not exceed reconnect.max_interval"),
// else name.
func envSource(msg string, keys []string, applied map[string]string, name string) string {
	for _, k := range keys {
		if isKeyAt(msg, 0, k) {
			return applied[k]
		}
	}
	for _, k := range keys {
		for i := strings.Index(msg, k); i >= 0; {
			if (i == 0 || msg[i-1] == ' ') && isKeyAt(msg, i, k) {
				return applied[k]
			}
			j := strings.Index(msg[i+1:], k)
			if j < 0 {
				break
			}
			i += 1 + j
		}
	}
	return name
}

// isKeyAt reports whether msg holds the whole key k at i.
func isKeyAt(msg string, i int, k string) bool {
	if !strings.HasPrefix(msg[i:], k) {
		return false
	}
	rest := msg[i+len(k):]
	return rest == "" || strings.ContainsRune(" :=[", rune(rest[0]))
}
