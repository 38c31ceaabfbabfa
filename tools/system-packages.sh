#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, when they are missing:
# Debian's Python gRPC, protoc and venv, for the Python client's tests; Go with Debian's gRPC and
# protobuf sources and protoc plugins, for the Go client's (docs/clients.md); redis-server and
# redis-tools (redis-cli, redis-benchmark), which the KV store's tests and benchmark start on a loopback
# port, and openssl, which makes their TLS certificates; curl, for the README's HTTP call; valkey-server, on which the snapshot store's tests run too; and Mesa's lavapipe (Vulkan on the CPU), for
# the tests of --execution-provider webgpu, which run on it where there is no GPU.
set -euo pipefail

sudo_cmd=""
if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
apt_install() { $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@"; }

missing=()
/usr/bin/python3 -c "import grpc, google.protobuf" 2>/dev/null || missing+=(python3-grpcio python3-protobuf)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
command -v grpc_python_plugin >/dev/null || missing+=(protobuf-compiler-grpc)
installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
# The Python client installs into a venv (ensurepip) and builds with setuptools, without reaching PyPI.
for package in python3-venv python3-setuptools python3-wheel; do installed "$package" || missing+=("$package"); done
# The Go client builds in GOPATH mode over /usr/share/gocode. protobuf 1-5, not 1-3: with 1-3 the
# generated client panics on the first reply.
for package in golang-go golang-google-grpc-dev golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev protoc-gen-go protoc-gen-go-grpc; do
  installed "$package" || missing+=("$package")
done
command -v redis-server >/dev/null && command -v redis-benchmark >/dev/null || missing+=(redis-server redis-tools)
command -v openssl >/dev/null || missing+=(openssl)
# The snapshot store's tests run on Valkey as well (from bookworm-backports on bookworm).
valkey_ok=true
command -v valkey-server >/dev/null || valkey_ok=false
# The README's HTTP call is run with curl (test/http/readme-curl.test.ts).
command -v curl >/dev/null || missing+=(curl)

# onnxruntime's WebGPU provider (Dawn) runs on lavapipe from Mesa 25 (bookworm-backports 25.0.7);
# bookworm's own 22.3 gives it no adapter.
mesa_version=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
lavapipe_ok=false
if ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1 && [ -n "$mesa_version" ] && dpkg --compare-versions "$mesa_version" ge 25; then
  lavapipe_ok=true
fi

[ ${#missing[@]} -eq 0 ] && $lavapipe_ok && $valkey_ok && exit 0

codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
if { ! $lavapipe_ok || ! $valkey_ok; } && [ "$codename" = bookworm ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "system-packages: adding the Debian bookworm-backports source (for Mesa's lavapipe and Valkey)" >&2
  printf '%s\n' "Types: deb" "URIs: http://deb.debian.org/debian" "Suites: bookworm-backports" "Components: main" \
    "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg" | $sudo_cmd tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
fi

$sudo_cmd apt-get update -q
if [ ${#missing[@]} -gt 0 ]; then
  echo "system-packages: installing ${missing[*]}" >&2
  apt_install "${missing[@]}"
fi
if ! $lavapipe_ok; then
  echo "system-packages: installing mesa-vulkan-drivers (lavapipe)" >&2
  if [ "$codename" = bookworm ]; then apt_install -t bookworm-backports mesa-vulkan-drivers; else apt_install mesa-vulkan-drivers; fi
fi
if ! $valkey_ok; then
  echo "system-packages: installing valkey-server" >&2
  if [ "$codename" = bookworm ]; then apt_install -t bookworm-backports valkey-server; else apt_install valkey-server; fi
fi
