#!/usr/bin/env bash
# Regenerates the committed Python stubs (src/kvwarden_client/v1) from proto/, with Debian's protoc
# and grpc_python_plugin (docs/clients.md). Writes under $1 when given, so a test can check the
# committed files are current.
#
# protoc names generated modules after the proto's path, and kvwarden/v1/... would make them the
# top-level package `kvwarden`, which on PyPI is an unrelated project. So protoc reads the proto as
# kvwarden_client/v1/kvwarden.proto, and the stubs import each other inside kvwarden_client.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto=$(cd "$here/../../proto" && pwd)
out=${1:-$here/src}
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
mkdir -p "$staging/kvwarden_client/v1" "$out/kvwarden_client/v1"
cp "$proto/kvwarden/v1/kvwarden.proto" "$staging/kvwarden_client/v1/"
protoc -I "$staging" --python_out="$out" --pyi_out="$out" --grpc_python_out="$out" \
  --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" "$staging/kvwarden_client/v1/kvwarden.proto"
