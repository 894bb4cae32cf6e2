#!/usr/bin/env bash
# Builds the container images ferry-agent, ferry-gateway and
# ferry-demo-target, each tagged VERSION and every EXTRA_TAG:
#
#   configs/container/build.sh VERSION [EXTRA_TAG...]      (make image)
#
# No base image is pulled: the static binaries (CGO_ENABLED=0) are built on
# this host and copied FROM scratch with the host's CA bundle and a passwd
# entry for user ferry (65532). Environment: GO (default go), GOARCH
# (default the host's), CA_BUNDLE (default /etc/ssl/certs/ca-certificates.crt),
# DOCKER (default docker).
set -euo pipefail

if [ $# -lt 1 ] || [ -z "$1" ]; then
  echo "usage: $0 VERSION [EXTRA_TAG...]" >&2
  exit 2
fi
version=$1
shift
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
GO=${GO:-go}
DOCKER=${DOCKER:-docker}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
goarch=${GOARCH:-$("$GO" env GOARCH)}

if [ ! -s "$CA_BUNDLE" ]; then
  echo "build.sh: no CA bundle at $CA_BUNDLE (install ca-certificates, or set CA_BUNDLE)" >&2
  exit 1
fi

ctx=$(mktemp -d "${TMPDIR:-/tmp}/ferry-image.XXXXXX")
trap 'rm -rf "$ctx"' EXIT

# One go build for the three programs: the linker runs in parallel.
mkdir -p "$ctx/bin"
(cd "$root" && CGO_ENABLED=0 GOOS=linux GOARCH="$goarch" "$GO" build -trimpath \
  -ldflags "-s -w -X main.version=$version" -o "$ctx/bin/" \
  ./cmd/ferry-agent ./cmd/ferry-gateway ./internal/cmd/demo-target)

# image NAME BINARY DOCKERFILE [EXTRA_TAG...]: a build context of its own.
image() {
  local name=$1 bin=$2 dockerfile=$3 dir="$ctx/$1"
  shift 3
  mkdir -p "$dir/data"
  mv "$ctx/bin/$bin" "$dir/$bin"
  cp "$here/passwd" "$here/group" "$here/$dockerfile" "$dir/"
  cp "$CA_BUNDLE" "$dir/ca-certificates.crt"
  chmod 0644 "$dir/passwd" "$dir/group" "$dir/ca-certificates.crt"
  local tags=(-t "$name:$version")
  for t in "$@"; do tags+=(-t "$name:$t"); done
  "$DOCKER" build -q --build-arg "VERSION=$version" -f "$dir/$dockerfile" "${tags[@]}" "$dir" >/dev/null 2>"$dir/build.log" || {
    echo "build.sh: docker build $name failed:" >&2
    cat "$dir/build.log" >&2
    return 1
  }
  echo "built $name:$version${*:+ (also: $*)}"
}

extra=("$@")
pids=()
image ferry-agent ferry-agent agent.Dockerfile "${extra[@]}" & pids+=($!)
image ferry-gateway ferry-gateway gateway.Dockerfile "${extra[@]}" & pids+=($!)
image ferry-demo-target demo-target demo-target.Dockerfile "${extra[@]}" & pids+=($!)
status=0
for p in "${pids[@]}"; do wait "$p" || status=1; done
exit $status
