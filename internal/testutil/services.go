package testutil

import (
	"os"
	"testing"
)

// Environment variables naming the services the end-to-end tests reach
// through the tunnel (scripts/test-services.sh env prints them).
const (
	EnvPostgresDSN     = "FERRY_TEST_POSTGRES_DSN"
	EnvRedisAddr       = "FERRY_TEST_REDIS_ADDR"
	EnvRequireServices = "FERRY_REQUIRE_SERVICES"
)

// PostgresDSN returns the test PostgreSQL DSN, or skips the test when it is
// not set (fails instead when FERRY_REQUIRE_SERVICES=1).
func PostgresDSN(t testing.TB) string {
	t.Helper()
	return service(t, EnvPostgresDSN, "PostgreSQL")
}

// RedisAddr returns the test Redis host:port, or skips the test when it is
// not set (fails instead when FERRY_REQUIRE_SERVICES=1).
func RedisAddr(t testing.TB) string {
	t.Helper()
	return service(t, EnvRedisAddr, "Redis")
}

func service(t testing.TB, env, what string) string {
	t.Helper()
	v := os.Getenv(env)
	if v != "" {
		return v
	}
	msg := what + " not configured: set " + env + ` (run: eval "$(scripts/test-services.sh env)"; scripts/test-services.sh start)`
	if os.Getenv(EnvRequireServices) == "1" {
		t.Fatal(msg + "; " + EnvRequireServices + "=1 makes this a failure")
	}
	t.Skip(msg)
	return ""
}
