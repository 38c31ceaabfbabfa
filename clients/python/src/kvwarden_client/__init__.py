"""Client for the kvwarden sidecar (docs/clients.md): KvwardenClient, and the kvwarden.v1 messages as `pb`."""
from kvwarden_client.client import Generation, KvwardenClient
from kvwarden_client.v1 import kvwarden_pb2 as pb

__all__ = ["Generation", "KvwardenClient", "pb"]
