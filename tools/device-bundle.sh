#!/usr/bin/env bash
# Packs what a bare x86-64 machine with a GPU and no network needs to run kvwarden's WebGPU path
# and its checks (tools/device-check.sh): this machine's node binary, the built dist/ and generated
# src/gen/, node_modules for linux-x64 (the production closure plus the test runner's), Debian's
# Vulkan loader, and the test model. The repository's own files travel beside it, not in it.
# Usage: tools/device-bundle.sh [OUT.tar.xz]   (default .device/kvwarden-device.tar.xz; at most 60 MiB)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.device/kvwarden-device.tar.xz}
limit=$((60 * 1024 * 1024))
models=../shared/models

[ "$(uname -m)" = x86_64 ] || { echo "device-bundle: the GPU machine is x86-64; build the bundle on one" >&2; exit 1; }
test -d node_modules || ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
npm run build >/dev/null

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/vulkan" "$stage/models"

cp "$(command -v node)" "$stage/bin/node"
cp "$models/stories260K.bin" "$models/tok512.bin" "$stage/models/"

# Vulkan loader: onnxruntime's WebGPU provider (Dawn) opens libvulkan.so.1; the GPU's driver brings the ICD.
(cd "$stage" && apt-get download -q libvulkan1 >/dev/null && dpkg-deb -x libvulkan1_*.deb vulkan && rm libvulkan1_*.deb)

# node_modules: what the server needs at run time, and vitest with everything it loads.
packages=$( { npm query '.prod'; npm query '#vitest, #vitest *'; } 2>/dev/null |
  node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const seen=new Set();
    for (const chunk of s.split(/\n(?=\[)/)) for (const p of JSON.parse(chunk)) if (p.location) seen.add(p.location);
    console.log([...seen].sort().join("\n"))})')

# Binaries for other platforms, type declarations, source maps and docs are dead weight there.
tar -C . -cf - --exclude='node_modules/onnxruntime-node/bin/napi-v*/darwin' --exclude='node_modules/onnxruntime-node/bin/napi-v*/win32' \
  --exclude='node_modules/onnxruntime-node/bin/napi-v*/linux/arm64' --exclude='*.d.ts' --exclude='*.d.mts' --exclude='*.map' \
  --exclude='*.md' --exclude='node_modules/typescript' $packages dist src/gen | tar -C "$stage" -xf -

mkdir -p "$(dirname "$out")"
tar -C "$stage" -cf - . | xz -T0 -6 >"$out"
size=$(stat -c %s "$out")
echo "device-bundle: $out, $((size / 1024 / 1024)) MiB ($size bytes)"
[ "$size" -le "$limit" ] || { echo "device-bundle: over the 60 MiB limit" >&2; exit 1; }
