"""KvwardenClient: the TypeScript client's verbs for Python backends, over the generated stubs."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, List, Optional, Sequence, Tuple

import grpc

from kvwarden_client.v1 import kvwarden_pb2 as pb
from kvwarden_client.v1 import kvwarden_pb2_grpc as rpc


@dataclass
class Generation:
    """A decode run to its end: the text, the token ids and why it stopped."""

    text: str = ""
    token_ids: List[int] = field(default_factory=list)
    finish_reason: "pb.FinishReason.ValueType" = pb.FINISH_REASON_UNSPECIFIED


class KvwardenClient:
    """Calls one sidecar. Requests are messages from `pb`, or their fields as keyword arguments.

    `address` is host:port (or unix:/path for a pod-local socket). `token` is sent as
    `authorization: Bearer TOKEN`, for sidecars started with --auth-tokens. `tls` encrypts the
    channel: e.g. grpc.ssl_channel_credentials(root_certificates=...) for a sidecar started with
    --tls-cert/--tls-key; without it the channel is plaintext (loopback). `timeout` (seconds) is
    every call's default deadline.
    """

    def __init__(
        self,
        address: str,
        *,
        token: Optional[str] = None,
        tls: Optional[grpc.ChannelCredentials] = None,
        timeout: Optional[float] = None,
        options: Sequence[Tuple[str, Any]] = (),
    ) -> None:
        self._channel = grpc.secure_channel(address, tls, options) if tls else grpc.insecure_channel(address, options)
        self.raw = rpc.KvCacheStub(self._channel)
        # Metadata rather than call credentials: grpc attaches those only to TLS channels.
        self._metadata: Tuple[Tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._timeout = timeout

    def prefill(self, request: Optional[pb.PrefillRequest] = None, /, *, timeout: Optional[float] = None, **fields: Any) -> pb.PrefillResponse:
        """Feeds tokens or text into a sequence, creating it if the id is new."""
        return self.raw.Prefill(request or pb.PrefillRequest(**fields), **self._call(timeout))

    def decode(self, request: Optional[pb.DecodeRequest] = None, /, *, timeout: Optional[float] = None, **fields: Any) -> Iterator[pb.DecodeResponse]:
        """Streams generated tokens; the last carries the finish reason. Leaving the loop early cancels the stream."""
        call = self.raw.Decode(request or pb.DecodeRequest(**fields), **self._call(timeout))
        try:
            yield from call
        finally:
            call.cancel()  # a no-op once the stream ended; stops generating when the caller broke out

    def generate(self, request: Optional[pb.DecodeRequest] = None, /, *, timeout: Optional[float] = None, **fields: Any) -> Generation:
        """Decodes to the end."""
        result = Generation()
        for token in self.decode(request, timeout=timeout, **fields):
            result.text += token.text
            result.token_ids.append(token.token_id)
            result.finish_reason = token.finish_reason
        return result

    def evict(self, request: Optional[pb.EvictRequest] = None, /, *, timeout: Optional[float] = None, **fields: Any) -> pb.EvictResponse:
        """Applies an eviction policy (`eviction=pb.EvictionSpec(...)`) to a sequence's cache now."""
        return self.raw.Evict(request or pb.EvictRequest(**fields), **self._call(timeout))

    def stats(self, request: Optional[pb.StatsRequest] = None, /, *, timeout: Optional[float] = None, **fields: Any) -> pb.StatsResponse:
        """Memory use, globally and (with `sequence_id`) per layer and KV head."""
        return self.raw.Stats(request or pb.StatsRequest(**fields), **self._call(timeout))

    def release(self, sequence_id: str, *, timeout: Optional[float] = None) -> pb.ReleaseResponse:
        """Frees a sequence; an unknown id is not an error."""
        return self.raw.Release(pb.ReleaseRequest(sequence_id=sequence_id), **self._call(timeout))

    def fork(self, sequence_id: str, new_sequence_id: str, *, timeout: Optional[float] = None) -> pb.ForkResponse:
        """Copies a sequence, cache and all, under a new id."""
        return self.raw.Fork(pb.ForkRequest(sequence_id=sequence_id, new_sequence_id=new_sequence_id), **self._call(timeout))

    def truncate(self, sequence_id: str, length: int, *, timeout: Optional[float] = None) -> pb.TruncateResponse:
        """Rolls a sequence back to its first `length` tokens."""
        return self.raw.Truncate(pb.TruncateRequest(sequence_id=sequence_id, length=length), **self._call(timeout))

    def info(self, *, timeout: Optional[float] = None) -> pb.InfoResponse:
        """The loaded model, the limits and the policies on offer."""
        return self.raw.Info(pb.InfoRequest(), **self._call(timeout))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> KvwardenClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, timeout: Optional[float]) -> dict:
        return {"metadata": self._metadata, "timeout": timeout if timeout is not None else self._timeout}
