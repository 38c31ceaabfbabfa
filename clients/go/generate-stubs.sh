#!/usr/bin/env bash
# Regenerates the committed Go stubs (clients/go/kvwardenv1) from proto/, with Debian's protoc,
# protoc-gen-go and protoc-gen-go-grpc (docs/clients.md). Writes to $1 when given, so a test can
# check the committed files are current.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto=$(cd "$here/../../proto" && pwd)
out=${1:-$here}
mkdir -p "$out"
protoc -I "$proto" \
  --go_out="$out" --go_opt=module=kvwarden/clients/go \
  --go-grpc_out="$out" --go-grpc_opt=module=kvwarden/clients/go \
  "$proto/kvwarden/v1/kvwarden.proto"
