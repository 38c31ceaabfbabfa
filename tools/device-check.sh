#!/usr/bin/env bash
# On a machine with a GPU and no network, from the repository's root with the bundle of
# tools/device-bundle.sh beside it: runs the WebGPU tests, the WebGPU bench on stories260K and the
# ~200M decode bench on the GPU, each under its own time limit (about 8 minutes in all), and writes
# the logs and reports to a folder. Every step runs even when one before it fails; the exit status
# says whether all passed.
# Usage: tools/device-check.sh [--quick] [BUNDLE.tar.xz] [FIGURES_DIR]
#        (defaults .device/kvwarden-device.tar.xz and $OUT, else device-figures/; --quick runs the
#        benches' quick variants, for checking the bundle on lavapipe)
set -uo pipefail
cd "$(dirname "$0")/.."
quick=()
[ "${1:-}" = --quick ] && { quick=(--quick); shift; }
bundle=$(realpath "${1:-.device/kvwarden-device.tar.xz}")
figures=$(mkdir -p "${2:-${OUT:-device-figures}}" && realpath "${2:-${OUT:-device-figures}}")
work=${TMPDIR:-/tmp}/kvwarden-device

rm -rf "$work" && mkdir -p "$work"
# Python's lzma where the image has no xz.
unxz() { if command -v xz >/dev/null; then xz -dc "$1"; else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"; fi; }
unxz "$bundle" | tar -C "$work" -xf - || { echo "device-check: cannot unpack $bundle" >&2; exit 1; }
for path in node_modules dist src/gen; do
  [ -e "$path" ] && { echo "device-check: $path exists here; run from a copy without it, so the bundle is what is checked" >&2; exit 1; }
  ln -s "$work/$path" "$path"
done
# The tests read stories260K from ../shared/models beside the checkout; the default model (dist/
# lives in the bundle) from the user cache.
mkdir -p ../shared/models && cp -n "$work"/models/* ../shared/models/
export XDG_CACHE_HOME="$work/cache"
mkdir -p "$XDG_CACHE_HOME/kvwarden/stories260K" && cp "$work"/models/* "$XDG_CACHE_HOME/kvwarden/stories260K/"

export PATH="$work/bin:$PATH"
export LD_LIBRARY_PATH="$work/vulkan/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}
# NVIDIA's container runtime mounts its driver and ICD under /usr/local/nvidia rather than /usr.
for lib in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do [ -d "$lib" ] && LD_LIBRARY_PATH="$LD_LIBRARY_PATH:$lib"; done
icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
[ -f "$icd" ] && export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
threads=$(( $(nproc) < 8 ? $(nproc) : 8 ))

{
  echo "date: $(date -u +%FT%TZ)"
  echo "node: $(node --version); cpus: $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-unset}"
  [ -f "$icd" ] && cat "$icd"
  node -e 'import("onnxruntime-node").then(o => console.log("onnxruntime-node", o.default.env.versions.common, "backends", JSON.stringify(o.default.listSupportedBackends())))'
} >"$figures/device.txt" 2>&1
cat "$figures/device.txt"

status=0
step() { # name, seconds, command...
  local name=$1 seconds=$2; shift 2
  echo "== $name (at most ${seconds} s)"
  local start=$SECONDS
  timeout --kill-after=10 "$seconds" "$@" >"$figures/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc after $((SECONDS - start)) s" | tee -a "$figures/summary.txt"
  tail -n 25 "$figures/$name.log"
  [ $rc -eq 0 ] || status=1
}

step webgpu-tests 150 node node_modules/vitest/vitest.mjs run test/webgpu
step webgpu-large-decode 240 node dist/bench/webgpu-large-decode.js "${quick[@]}" --threads "$threads" --out "$figures/webgpu-large-decode.md"
step webgpu-bench 120 node dist/bench/webgpu-bench.js "${quick[@]}" --out "$figures/webgpu.md"
exit $status
