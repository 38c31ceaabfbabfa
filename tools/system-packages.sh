#!/usr/bin/env bash
# Installs the Debian packages the test suite needs, when they are missing:
# Debian's Python gRPC and protoc, for the Python client test.
set -euo pipefail

missing=()
/usr/bin/python3 -c "import grpc, google.protobuf" 2>/dev/null || missing+=(python3-grpcio python3-protobuf)
command -v protoc >/dev/null || missing+=(protobuf-compiler)
command -v grpc_python_plugin >/dev/null || missing+=(protobuf-compiler-grpc)
[ ${#missing[@]} -eq 0 ] && exit 0

sudo_cmd=""
if [ "$(id -u)" != 0 ]; then sudo_cmd="sudo"; fi
echo "system-packages: installing ${missing[*]}" >&2
$sudo_cmd apt-get update -q
$sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
