#!/usr/bin/env bash
# Generates the Python gRPC stubs for kvwarden.v1 into examples/python/.
# Uses grpcio-tools from pip when present, else Debian's protoc + grpc_python_plugin.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto=$(cd "$here/../../proto" && pwd)
python=${PYTHON:-python3}
if "$python" -c "import grpc_tools" 2>/dev/null; then
  "$python" -m grpc_tools.protoc -I "$proto" --python_out="$here" --grpc_python_out="$here" "$proto/kvwarden/v1/kvwarden.proto"
else
  protoc -I "$proto" --python_out="$here" --grpc_python_out="$here" \
    --plugin=protoc-gen-grpc_python="$(command -v grpc_python_plugin)" "$proto/kvwarden/v1/kvwarden.proto"
fi
