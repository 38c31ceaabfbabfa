"""Mistakes the installed package's types must catch: test/clients/python-client.test.ts expects pyright
to report exactly these three, so the wrapper and the stubs it installs are really typed, not Any."""
from kvwarden_client import KvwardenClient, pb

client = KvwardenClient("127.0.0.1:50051")
client.release(123)  # reportArgumentType: a sequence id is a str
count: str = client.prefill(sequence_id="s", text="t").prompt_tokens  # reportAssignmentType: an int
pb.DecodeRequest(sequence="s")  # reportCallIssue: the field is sequence_id
