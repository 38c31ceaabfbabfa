"""What a Python backend writes after installing kvwarden-client: run by test/clients/python-client.test.ts
with the virtual environment's interpreter, so it sees only the installed package. Every verb once;
prints what it got as JSON (the fields of test/support/greedy-story.ts).

    story.py [--token TOKEN] [--ca CA.pem] [--tokens 20] ADDRESS SEQUENCE_ID
"""
import argparse
import json
import sys

import grpc

from kvwarden_client import KvwardenClient, pb

parser = argparse.ArgumentParser()
parser.add_argument("address")
parser.add_argument("sequence_id")
parser.add_argument("--token")
parser.add_argument("--ca", help="PEM CA bundle to verify a TLS sidecar with; without it the channel is plaintext")
parser.add_argument("--tokens", type=int, default=20)
args = parser.parse_args()

tls = None
if args.ca:
    with open(args.ca, "rb") as ca:
        tls = grpc.ssl_channel_credentials(root_certificates=ca.read())

with KvwardenClient(args.address, token=args.token, tls=tls, timeout=30) as client:
    try:
        info = client.info()
    except grpc.RpcError as error:
        print(f"{error.code().name}: {error.details()}", file=sys.stderr)
        sys.exit(1)
    prefill = client.prefill(sequence_id=args.sequence_id, text="Once upon a time")
    streamed = list(client.decode(pb.DecodeRequest(sequence_id=args.sequence_id, max_new_tokens=args.tokens)))
    fork = f"{args.sequence_id}-fork"
    forked = client.fork(args.sequence_id, fork)
    truncated = client.truncate(fork, prefill.prompt_tokens)
    client.release(fork)
    evicted = client.evict(sequence_id=args.sequence_id, eviction=pb.EvictionSpec(policy="streaming_llm", max_tokens=8))
    stats = client.stats(sequence_id=args.sequence_id)
    released = client.release(args.sequence_id)
    print(json.dumps({
        "model": info.model.name,
        "promptTokens": prefill.prompt_tokens,
        "tokenIds": [message.token_id for message in streamed],
        "text": "".join(message.text for message in streamed),
        "finishReason": pb.FinishReason.Name(streamed[-1].finish_reason),
        "forkPosition": forked.position,
        "truncatedPosition": truncated.position,
        "droppedTokens": truncated.dropped_tokens,
        "entriesAfterEviction": evicted.eviction.entries_after,
        "statsPosition": stats.sequences[0].position,
        "released": released.found,
    }))
