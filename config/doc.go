// Package config loads, defaults and validates the TOML configuration of
// ferry-agent ([Agent]) and ferry-gateway ([Gateway]).
//
// Loading is strict: the file is decoded over the defaults ([DefaultAgent],
// [DefaultGateway]), so a key that is absent keeps its default while a key
// that is present, even as "", replaces it; an unknown or misspelt key, a
// value of the wrong type and a duration written as a bare number are errors
// that name the key and, where known, its line. Durations are strings such as
// "500ms", "30s" or "5m".
//
// Validate checks values only: it never touches the file system or the
// network, so files named by the config (certificates, CA bundles, token
// files) are opened by the programs when they need them, and a config can be
// checked on a machine other than the one it is meant for. Relative paths are
// relative to the process's working directory; services should use absolute
// paths.
//
// The config structs are plain values: safe to read concurrently, and never
// modified by the methods of this package.
package config
