"""What a Python backend writes after installing kvwarden-client: run by test/clients/python-client.test.ts
with the virtual environment's interpreter, so it sees only the installed package.

    story.py ADDRESS SEQUENCE_ID TOKENS [BEARER_TOKEN]
"""
import json
import sys

import grpc

from kvwarden_client import KvwardenClient, pb

address, sequence_id, tokens = sys.argv[1], sys.argv[2], int(sys.argv[3])
token = sys.argv[4] if len(sys.argv) > 4 else None

with KvwardenClient(address, token=token, timeout=30) as client:
    try:
        info = client.info()
    except grpc.RpcError as error:
        print(f"{error.code().name}: {error.details()}", file=sys.stderr)
        sys.exit(1)
    prefill = client.prefill(sequence_id=sequence_id, text="Once upon a time")
    streamed = list(client.decode(pb.DecodeRequest(sequence_id=sequence_id, max_new_tokens=tokens)))
    released = client.release(sequence_id)
    print(json.dumps({
        "model": info.model.name,
        "promptTokens": prefill.prompt_tokens,
        "tokenIds": [message.token_id for message in streamed],
        "text": "".join(message.text for message in streamed),
        "finishReason": pb.FinishReason.Name(streamed[-1].finish_reason),
        "released": released.found,
    }))
