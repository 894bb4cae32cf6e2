#!/usr/bin/env bash
# `make run`: a gateway on SQLite with a self-signed certificate, an agent,
# a small HTTP service behind the agent, and a connection that reaches it
# through the tunnel. Everything lives in .run/ and stops on Ctrl-C.
# Ports can be moved with FERRY_RUN_TUNNEL_PORT, FERRY_RUN_ADMIN_PORT,
# FERRY_RUN_METRICS_PORT, FERRY_RUN_TARGET_PORT and FERRY_RUN_CONN_PORT.
set -euo pipefail
cd "$(dirname "$0")/.."

TUNNEL_PORT=${FERRY_RUN_TUNNEL_PORT:-8443}
ADMIN_PORT=${FERRY_RUN_ADMIN_PORT:-8081}
METRICS_PORT=${FERRY_RUN_METRICS_PORT:-9464}
TARGET_PORT=${FERRY_RUN_TARGET_PORT:-18080}
CONN_PORT=${FERRY_RUN_CONN_PORT:-15080}
RUN=.run
mkdir -p "$RUN/gateway"

pids=()
cleanup() {
  trap - INT TERM HUP PIPE EXIT
  echo
  echo "stopping..."
  for ((i=${#pids[@]}-1; i>=0; i--)); do kill -TERM "${pids[$i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM HUP PIPE EXIT

# http_get URL: print the body of a plain-HTTP GET; fails unless 200.
# Uses curl when present, else bash's /dev/tcp.
http_get() {
  if command -v curl >/dev/null 2>&1; then curl -fsS "$1"; return; fi
  local rest=${1#http://} hostport path host port status
  hostport=${rest%%/*}; path=/${rest#*/}; [ "$rest" = "$hostport" ] && path=/
  host=${hostport%:*}; port=${hostport##*:}
  exec 3<>"/dev/tcp/$host/$port" || return 1
  printf 'GET %s HTTP/1.0\r\nHost: %s\r\n\r\n' "$path" "$hostport" >&3
  IFS= read -r status <&3
  case "$status" in *" 200 "*) ;; *) exec 3<&-; return 1 ;; esac
  while IFS= read -r line <&3 && [ "$line" != $'\r' ]; do :; done
  cat <&3
  exec 3<&-
}

wait_http() { # url, what
  for _ in $(seq 1 100); do
    if http_get "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "run-local: $2 did not come up; see $RUN/*.log" >&2
  exit 1
}

cat > "$RUN/gateway.toml" <<TOML
data_dir = "$RUN/gateway"
node_id = "local"
[listen]
tunnel = "127.0.0.1:$TUNNEL_PORT"
admin = "127.0.0.1:$ADMIN_PORT"
[tls]
self_signed = true
[store]
driver = "sqlite"
TOML

bin/demo-target --listen "127.0.0.1:$TARGET_PORT" >"$RUN/demo-target.log" 2>&1 &
pids+=($!)
bin/ferry-gateway serve --config "$RUN/gateway.toml" >"$RUN/gateway.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$ADMIN_PORT/healthz" "ferry-gateway"
wait_http "http://127.0.0.1:$TARGET_PORT/" "demo-target"

export FERRY_API="http://127.0.0.1:$ADMIN_PORT"
FERRY_ADMIN_TOKEN=$(cat "$RUN/gateway/admin.token")
export FERRY_ADMIN_TOKEN

# A fresh agent token each run: create the agent, or rotate its token.
if out=$(bin/ferry-gateway agents create local --description "make run" 2>/dev/null); then :; else
  out=$(bin/ferry-gateway agents token local)
fi
sed -n 's/^token: //p' <<<"$out" > "$RUN/agent.token"
chmod 600 "$RUN/agent.token"

cat > "$RUN/agent.toml" <<TOML
[gateway]
url = "wss://localhost:$TUNNEL_PORT/v1/tunnel"
token_file = "$RUN/agent.token"
ca_file = "$RUN/gateway/tls/cert.pem"
ha_connections = 2
[access]
allow = ["127.0.0.1:$TARGET_PORT"]
[metrics]
listen = "127.0.0.1:$METRICS_PORT"
[agent]
lock_file = "$RUN/agent.lock"
shutdown_grace = "5s"
TOML
bin/ferry-agent run --config "$RUN/agent.toml" >"$RUN/agent.log" 2>&1 &
pids+=($!)
wait_http "http://127.0.0.1:$METRICS_PORT/readyz" "ferry-agent's tunnel"

bin/ferry-gateway connections delete demo >/dev/null 2>&1 || true
bin/ferry-gateway connections create demo --agent local --target "127.0.0.1:$TARGET_PORT" --listen "127.0.0.1:$CONN_PORT" >/dev/null

echo "== a request through the tunnel: GET http://127.0.0.1:$CONN_PORT/"
http_get "http://127.0.0.1:$CONN_PORT/"
echo
bin/ferry-gateway agents show local
echo
cat <<INFO
Ferry is running (logs in $RUN/*.log):
  connection demo   127.0.0.1:$CONN_PORT -> agent "local" -> 127.0.0.1:$TARGET_PORT
  admin API         $FERRY_API   (FERRY_ADMIN_TOKEN is in $RUN/gateway/admin.token)
  gateway metrics   $FERRY_API/metrics
  agent metrics     http://127.0.0.1:$METRICS_PORT/metrics   status: bin/ferry-agent status --config $RUN/agent.toml
Try:  export FERRY_API=$FERRY_API FERRY_ADMIN_TOKEN=\$(cat $RUN/gateway/admin.token); bin/ferry-gateway agents list
Press Ctrl-C to stop.
INFO
wait -n "${pids[@]}" || true
echo "run-local: a process exited; see $RUN/*.log" >&2
