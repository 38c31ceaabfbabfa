"""A Python client: prefill a prompt, stream a greedy continuation, evict, read stats, free the sequence.

Generate the stubs first (see docs/clients.md), then:  python3 examples/python/client.py [address]
"""
import sys

import grpc

from kvwarden.v1 import kvwarden_pb2 as pb
from kvwarden.v1 import kvwarden_pb2_grpc as rpc

address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
prompt = "Once upon a time"
budget = 16

with grpc.insecure_channel(address) as channel:
    kv = rpc.KvCacheStub(channel)
    prefill = kv.Prefill(pb.PrefillRequest(sequence_id="py-story", text=prompt))
    print(f"prefilled {prefill.prompt_tokens} tokens, KV bytes {prefill.kv_bytes}", file=sys.stderr)
    pieces = [message.text for message in kv.Decode(pb.DecodeRequest(sequence_id="py-story", max_new_tokens=64))]
    print(prompt + "".join(pieces))

    # Keep the 4 first entries (attention sinks) and the most recent ones: 16 per KV head.
    evict = kv.Evict(pb.EvictRequest(sequence_id="py-story", eviction=pb.EvictionSpec(policy="streaming_llm", max_tokens=budget)))
    result = evict.eviction
    print(f"evicted with {result.policy}: {result.entries_before} -> {result.entries_after} entries, "
          f"{result.bytes_before} -> {result.bytes_after} bytes", file=sys.stderr)

    stats = kv.Stats(pb.StatsRequest(sequence_id="py-story"))
    sequence = stats.sequences[0]
    longest = max(max(layer.head_lengths) for layer in sequence.layers)
    print(f"stats: position {sequence.position}, {sequence.kv_bytes} KV bytes, longest head {longest} entries, "
          f"{stats.kv_bytes_used} of {stats.kv_bytes_budget} bytes used", file=sys.stderr)
    assert longest <= budget, f"a head holds {longest} entries, over the budget of {budget}"

    kv.Release(pb.ReleaseRequest(sequence_id="py-story"))
