#!/usr/bin/env bash
# Installs (from Debian's packages) and starts the PostgreSQL and Redis that
# the end-to-end tests reach through the tunnel; installs iproute2 and
# nftables for the network-namespace tests, and promtool (Debian's
# prometheus package) for the alert-rule tests; and systemd-analyze,
# osslsigncode and openssl for the service and release tests.
#   scripts/test-services.sh start   install if absent, start, create the test role
#   scripts/test-services.sh env     print the variables the tests read
set -euo pipefail

PG_DSN="postgres://ferry:ferry@127.0.0.1:5432/ferry_test?sslmode=disable"
REDIS_ADDR="127.0.0.1:6379"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_missing() {
  local need=()
  ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
  # Service and release tests: systemd-analyze verify, Authenticode signing.
  command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
  command -v osslsigncode >/dev/null 2>&1 || need+=(osslsigncode)
  command -v openssl >/dev/null 2>&1 || need+=(openssl)
  # promtool (checks configs/prometheus/ferry-alerts.yml) comes with
  # Debian's prometheus package; nothing is started from it.
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
  # The network-namespace tests (test/netns_test.go) build their topology
  # with ip (veth, netns) and firewall the agent host with nft.
  command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || need+=(iproute2)
  command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need+=(nftables)
  if [ ${#need[@]} -gt 0 ]; then
    echo "test-services: installing ${need[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

start_postgres() {
  local ver
  ver=$(ls /usr/lib/postgresql | sort -V | tail -n1)
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -q "^$ver main$"; then
    as_root pg_createcluster "$ver" main >/dev/null
  fi
  if ! pg_lsclusters -h | awk -v v="$ver" '$1==v && $2=="main" {print $4}' | grep -q online; then
    as_root pg_ctlcluster "$ver" main start
  fi
  for _ in $(seq 1 50); do
    as_root su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1 && break
    sleep 0.2
  done
  as_root su postgres -c "psql -qAtc \"select 1 from pg_roles where rolname='ferry'\"" | grep -q 1 ||
    as_root su postgres -c "psql -qc \"create role ferry login superuser password 'ferry'\""
  as_root su postgres -c "psql -qAtc \"select 1 from pg_database where datname='ferry_test'\"" | grep -q 1 ||
    as_root su postgres -c "createdb -O ferry ferry_test"
}

start_redis() {
  if ! (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; then
    redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --daemonize yes >/dev/null
    for _ in $(seq 1 50); do
      (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null && break
      sleep 0.1
    done
  fi
}

case "${1:-}" in
  start)
    install_missing
    start_postgres
    start_redis
    echo "test-services: PostgreSQL and Redis are up"
    ;;
  env)
    echo "export FERRY_TEST_POSTGRES_DSN='$PG_DSN'"
    echo "export FERRY_TEST_REDIS_ADDR='$REDIS_ADDR'"
    ;;
  *)
    echo "usage: $0 start|env" >&2
    exit 2
    ;;
esac
