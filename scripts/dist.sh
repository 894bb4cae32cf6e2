#!/usr/bin/env bash
# Release binaries: cross-compiles ferry-agent and ferry-gateway for every
# platform into OUT (default dist/), signs the Windows executables with
# Authenticode when a certificate is given, and writes OUT/SHA256SUMS.
#
#   scripts/dist.sh [OUT]          (make dist runs it)
#
# Environment:
#   VERSION             version embedded in the binaries and their names
#                       (default: git describe, or "dev")
#   PLATFORMS           default "linux/amd64 linux/arm64 windows/amd64 darwin/arm64"
#   GO                  the go command (default go)
#   SIGN_CERT           code-signing certificate for osslsigncode: either a
#                       PEM (or DER) certificate chain, used with SIGN_KEY, or a
#                       PKCS#12 bundle (.p12/.pfx) holding certificate and key,
#                       used alone
#   SIGN_KEY            the private key (PEM or DER) for a PEM SIGN_CERT
#   SIGN_PASS_FILE      file holding the password of an encrypted key or
#                       PKCS#12 bundle (optional)
#   SIGN_TIMESTAMP_URL  RFC 3161 timestamp server (optional; needs network):
#                       without it the signature is valid only while the
#                       certificate is
# Names: ferry-agent_VERSION_OS_ARCH, with .exe on Windows.
set -euo pipefail

out=${1:-dist}
GO=${GO:-go}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
PLATFORMS=${PLATFORMS:-"linux/amd64 linux/arm64 windows/amd64 darwin/arm64"}
PROGRAMS="ferry-agent ferry-gateway"

die() { echo "dist: $*" >&2; exit 1; }

[[ $VERSION =~ ^[A-Za-z0-9][A-Za-z0-9._+-]*$ ]] || die "VERSION=\"$VERSION\": use letters, digits and . _ + - only"

sign_args=()
if [[ -n ${SIGN_CERT:-} || -n ${SIGN_KEY:-} ]]; then
  command -v osslsigncode >/dev/null || die "SIGN_CERT is set but osslsigncode is not installed (apt-get install osslsigncode)"
  [[ -r ${SIGN_CERT:-} ]] || die "SIGN_CERT=\"${SIGN_CERT:-}\": not a readable file"
  case ${SIGN_CERT,,} in
    *.p12 | *.pfx)
      [[ -z ${SIGN_KEY:-} ]] || die "SIGN_CERT is a PKCS#12 bundle, which holds the key: leave SIGN_KEY unset"
      sign_args=(-pkcs12 "$SIGN_CERT")
      ;;
    *)
      [[ -r ${SIGN_KEY:-} ]] || die "SIGN_KEY=\"${SIGN_KEY:-}\": a PEM SIGN_CERT needs its private key in a readable SIGN_KEY"
      sign_args=(-certs "$SIGN_CERT" -key "$SIGN_KEY")
      ;;
  esac
  if [[ -n ${SIGN_PASS_FILE:-} ]]; then
    sign_args+=(-readpass "$SIGN_PASS_FILE")
  fi
  if [[ -n ${SIGN_TIMESTAMP_URL:-} ]]; then
    sign_args+=(-ts "$SIGN_TIMESTAMP_URL")
  fi
fi

root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/ferry-agent_* "$out"/ferry-gateway_* "$out"/SHA256SUMS

# One job per platform; the build cache makes them cheap after the first.
pids=()
for p in $PLATFORMS; do
  os=${p%/*} arch=${p#*/}
  ext=""
  [[ $os == windows ]] && ext=.exe
  (
    cd "$root"
    for prog in $PROGRAMS; do
      CGO_ENABLED=0 GOOS=$os GOARCH=$arch "$GO" build -trimpath \
        -ldflags "-s -w -X main.version=$VERSION" \
        -o "$out/${prog}_${VERSION}_${os}_${arch}${ext}" "./cmd/$prog"
    done
  ) &
  pids+=($!)
done
failed=0
for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
[[ $failed == 0 ]] || die "a build failed"

if [[ ${#sign_args[@]} -gt 0 ]]; then
  for exe in "$out"/*.exe; do
    osslsigncode sign "${sign_args[@]}" -h sha256 \
      -n "Ferry $(basename "${exe%%_*}")" -i "https://github.com/ferry-tunnel/ferry" \
      -in "$exe" -out "$exe.signed" >/dev/null
    mv "$exe.signed" "$exe"
    echo "dist: signed $(basename "$exe")"
  done
else
  echo "dist: SIGN_CERT not set: the Windows executables are NOT signed"
fi

cd "$out"
if command -v sha256sum >/dev/null; then
  sha256sum ferry-agent_* ferry-gateway_* >SHA256SUMS
else
  shasum -a 256 ferry-agent_* ferry-gateway_* >SHA256SUMS
fi
echo "dist: $(wc -l <SHA256SUMS | tr -d ' ') files and SHA256SUMS in $out"
