"""A Python client: prefill a prompt, stream a greedy continuation, free the sequence.

Generate the stubs first (see README), then:  python3 examples/python/client.py [address]
"""
import sys

import grpc

from kvwarden.v1 import kvwarden_pb2 as pb
from kvwarden.v1 import kvwarden_pb2_grpc as rpc

address = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:50051"
prompt = "Once upon a time"

with grpc.insecure_channel(address) as channel:
    kv = rpc.KvCacheStub(channel)
    prefill = kv.Prefill(pb.PrefillRequest(sequence_id="py-story", text=prompt))
    print(f"prefilled {prefill.prompt_tokens} tokens, KV bytes {prefill.kv_bytes}", file=sys.stderr)
    pieces = [message.text for message in kv.Decode(pb.DecodeRequest(sequence_id="py-story", max_new_tokens=64))]
    print(prompt + "".join(pieces))
    kv.Release(pb.ReleaseRequest(sequence_id="py-story"))
