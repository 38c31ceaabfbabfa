# Entry points; npm scripts do the work (see package.json).
.PHONY: install build test serve bench bench-quick bench-llama-cpp bench-quantized bench-eviction bench-levers bench-tokenize load soak soak-quick fuzz-long client-stubs clean

install:
	ONNXRUNTIME_NODE_INSTALL=skip npm ci

build:
	npm run build

# The README's test command: from a fresh clone, installs what the tests need, then runs them all.
test:
	bash tools/system-packages.sh
	test -d node_modules || ONNXRUNTIME_NODE_INSTALL=skip npm ci --no-audit --no-fund
	npm test

serve: build
	npm run serve

bench: build
	node --expose-gc dist/bench/bench.js --out docs/bench/latest.md
	node dist/bench/quantized-decode.js --out docs/bench/quantized-decode.md
	node dist/bench/llama-cpp-decode.js --out docs/bench/llama-cpp.md
	node dist/bench/webgpu-bench.js --out docs/bench/webgpu.md
	node dist/bench/tokenize-bench.js --out docs/bench/tokenize.md
	node dist/bench/short-beside-long-bench.js --out docs/bench/short-beside-long.md
	node dist/bench/soak.js --out docs/bench/soak.md
	node dist/bench/concurrent-evictions-bench.js --out docs/bench/concurrent-evictions.md
	node dist/bench/kv-store-bench.js --out docs/bench/kv-store.md
	node dist/bench/kv-restore-bench.js --out docs/bench/kv-restore.md
	node dist/bench/kv-capacity-bench.js --out docs/bench/kv-capacity.md
	node dist/bench/per-sequence-overhead.js --out docs/bench/per-sequence-overhead.md
	node dist/bench/warm-up-bench.js --out docs/bench/warm-up.md
	node dist/bench/capacity-gain-bench.js --out docs/bench/capacity-gain.md
	node dist/bench/batching-bench.js --out docs/bench/batching.md

bench-quick: build
	node --expose-gc dist/bench/bench.js --quick
	node dist/bench/quantized-decode.js --quick
	node dist/bench/llama-cpp-decode.js --quick
	node dist/bench/webgpu-bench.js --quick
	node dist/bench/tokenize-bench.js --quick
	node dist/bench/short-beside-long-bench.js --quick
	node dist/bench/soak.js --quick
	node dist/bench/concurrent-evictions-bench.js --quick
	node dist/bench/kv-store-bench.js --quick
	node dist/bench/kv-restore-bench.js --quick
	node dist/bench/kv-capacity-bench.js --quick
	node dist/bench/per-sequence-overhead.js --quick
	node dist/bench/warm-up-bench.js --quick
	node dist/bench/capacity-gain-bench.js --quick
	node dist/bench/batching-bench.js --quick

bench-llama-cpp: build
	node dist/bench/llama-cpp-decode.js --out docs/bench/llama-cpp.md

bench-quantized: build
	node dist/bench/quantized-decode.js

bench-tokenize: build
	node dist/bench/tokenize-bench.js --out docs/bench/tokenize.md

bench-eviction: build
	npm run bench:eviction

bench-levers: build
	node dist/bench/fused-attention-lever.js | tee docs/bench/fused-attention-lever.md

load: build
	node dist/bench/load.js

# 32 clients, every kind of call, 3 minutes; fails only on INTERNAL/UNKNOWN, a budget exceeded or the server dying.
soak: build
	node dist/bench/soak.js --out docs/bench/soak.md

soak-quick: build
	node dist/bench/soak.js --quick

fuzz-long:
	KVWARDEN_FUZZ=long npx vitest run test/fuzz

# The Go and Python clients' committed stubs, after a change to proto/ (docs/clients.md).
client-stubs:
	bash clients/go/generate-stubs.sh
	bash clients/python/generate-stubs.sh

clean:
	rm -rf dist src/gen
