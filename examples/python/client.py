"""A Python backend's calls: prefill a prompt, stream a greedy continuation, evict, read stats, free the sequence.

Install the client first (docs/clients.md), then:  python3 examples/python/client.py [address]
Set KVWARDEN_TOKEN for a sidecar started with --auth-tokens, and KVWARDEN_CA (a PEM CA bundle) for one
started with --tls-cert.
"""
import os
import sys

import grpc

from kvwarden_client import KvwardenClient, pb

address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
prompt = "Once upon a time"
budget = 16
tls = None
if os.environ.get("KVWARDEN_CA"):
    with open(os.environ["KVWARDEN_CA"], "rb") as ca:
        tls = grpc.ssl_channel_credentials(root_certificates=ca.read())

with KvwardenClient(address, token=os.environ.get("KVWARDEN_TOKEN"), tls=tls, timeout=30) as kv:
    prefill = kv.prefill(sequence_id="py-story", text=prompt)
    print(f"prefilled {prefill.prompt_tokens} tokens, KV bytes {prefill.kv_bytes}", file=sys.stderr)
    story = kv.generate(sequence_id="py-story", max_new_tokens=64)
    print(prompt + story.text)

    # Keep the 4 first entries (attention sinks) and the most recent ones: 16 per KV head.
    result = kv.evict(sequence_id="py-story", eviction=pb.EvictionSpec(policy="streaming_llm", max_tokens=budget)).eviction
    print(f"evicted with {result.policy}: {result.entries_before} -> {result.entries_after} entries, "
          f"{result.bytes_before} -> {result.bytes_after} bytes", file=sys.stderr)

    stats = kv.stats(sequence_id="py-story")
    sequence = stats.sequences[0]
    longest = max(max(layer.head_lengths) for layer in sequence.layers)
    print(f"stats: position {sequence.position}, {sequence.kv_bytes} KV bytes, longest head {longest} entries, "
          f"{stats.kv_bytes_used} of {stats.kv_bytes_budget} bytes used", file=sys.stderr)
    assert longest <= budget, f"a head holds {longest} entries, over the budget of {budget}"

    kv.release("py-story")
