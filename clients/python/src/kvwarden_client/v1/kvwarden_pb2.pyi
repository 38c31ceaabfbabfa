from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Iterable as _Iterable, Mapping as _Mapping, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor
FINISH_REASON_CONTEXT: FinishReason
FINISH_REASON_LENGTH: FinishReason
FINISH_REASON_STOP: FinishReason
FINISH_REASON_UNSPECIFIED: FinishReason
GROUP_REDUCTION_MAX: GroupReduction
GROUP_REDUCTION_MEAN: GroupReduction
GROUP_REDUCTION_SUM: GroupReduction
GROUP_REDUCTION_UNSPECIFIED: GroupReduction
POOLING_AVG: Pooling
POOLING_MAX: Pooling
POOLING_NONE: Pooling
POOLING_UNSPECIFIED: Pooling
RESIDENCY_BOTH: Residency
RESIDENCY_RESIDENT: Residency
RESIDENCY_STORED: Residency
RESIDENCY_UNSPECIFIED: Residency

class ChatMessage(_message.Message):
    __slots__ = ["content", "role"]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    content: str
    role: str
    def __init__(self, role: _Optional[str] = ..., content: _Optional[str] = ...) -> None: ...

class DecodeRequest(_message.Message):
    __slots__ = ["eviction", "ignore_eos", "max_new_tokens", "sampling", "sequence_id", "stop_token_ids"]
    EVICTION_FIELD_NUMBER: _ClassVar[int]
    IGNORE_EOS_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SAMPLING_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    STOP_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    eviction: EvictionSpec
    ignore_eos: bool
    max_new_tokens: int
    sampling: Sampling
    sequence_id: str
    stop_token_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, sequence_id: _Optional[str] = ..., max_new_tokens: _Optional[int] = ..., sampling: _Optional[_Union[Sampling, _Mapping]] = ..., stop_token_ids: _Optional[_Iterable[int]] = ..., ignore_eos: bool = ..., eviction: _Optional[_Union[EvictionSpec, _Mapping]] = ...) -> None: ...

class DecodeResponse(_message.Message):
    __slots__ = ["eviction", "finish_reason", "position", "text", "token_id"]
    EVICTION_FIELD_NUMBER: _ClassVar[int]
    FINISH_REASON_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    eviction: EvictionResult
    finish_reason: FinishReason
    position: int
    text: str
    token_id: int
    def __init__(self, token_id: _Optional[int] = ..., text: _Optional[str] = ..., position: _Optional[int] = ..., finish_reason: _Optional[_Union[FinishReason, str]] = ..., eviction: _Optional[_Union[EvictionResult, _Mapping]] = ...) -> None: ...

class EvictRequest(_message.Message):
    __slots__ = ["eviction", "request_id", "sequence_id"]
    EVICTION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    eviction: EvictionSpec
    request_id: str
    sequence_id: str
    def __init__(self, sequence_id: _Optional[str] = ..., eviction: _Optional[_Union[EvictionSpec, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class EvictResponse(_message.Message):
    __slots__ = ["eviction", "sequence_id"]
    EVICTION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    eviction: EvictionResult
    sequence_id: str
    def __init__(self, sequence_id: _Optional[str] = ..., eviction: _Optional[_Union[EvictionResult, _Mapping]] = ...) -> None: ...

class EvictionResult(_message.Message):
    __slots__ = ["applied", "budget_tokens", "bytes_after", "bytes_before", "detail", "entries_after", "entries_before", "entry_bytes_after", "entry_bytes_before", "evicted_attention_share", "kept", "lazy_layers", "policy"]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    BUDGET_TOKENS_FIELD_NUMBER: _ClassVar[int]
    BYTES_AFTER_FIELD_NUMBER: _ClassVar[int]
    BYTES_BEFORE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_AFTER_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_BEFORE_FIELD_NUMBER: _ClassVar[int]
    ENTRY_BYTES_AFTER_FIELD_NUMBER: _ClassVar[int]
    ENTRY_BYTES_BEFORE_FIELD_NUMBER: _ClassVar[int]
    EVICTED_ATTENTION_SHARE_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    LAZY_LAYERS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    applied: bool
    budget_tokens: int
    bytes_after: int
    bytes_before: int
    detail: str
    entries_after: int
    entries_before: int
    entry_bytes_after: int
    entry_bytes_before: int
    evicted_attention_share: float
    kept: _containers.RepeatedCompositeFieldContainer[LayerHeads]
    lazy_layers: _containers.RepeatedScalarFieldContainer[int]
    policy: str
    def __init__(self, policy: _Optional[str] = ..., applied: bool = ..., budget_tokens: _Optional[int] = ..., entries_before: _Optional[int] = ..., entries_after: _Optional[int] = ..., bytes_before: _Optional[int] = ..., bytes_after: _Optional[int] = ..., kept: _Optional[_Iterable[_Union[LayerHeads, _Mapping]]] = ..., detail: _Optional[str] = ..., lazy_layers: _Optional[_Iterable[int]] = ..., evicted_attention_share: _Optional[float] = ..., entry_bytes_before: _Optional[int] = ..., entry_bytes_after: _Optional[int] = ...) -> None: ...

class EvictionSpec(_message.Message):
    __slots__ = ["alpha", "base_policy", "beta", "decode_slack", "delta", "group_reduction", "keep_fraction", "keep_highest_norm", "kernel_size", "max_tokens", "policy", "pooling", "proxy_span", "proxy_tokens", "random_share", "recent_tokens", "seed", "sink_tokens", "skip_layers", "skip_no_layers", "temperature", "window"]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    BASE_POLICY_FIELD_NUMBER: _ClassVar[int]
    BETA_FIELD_NUMBER: _ClassVar[int]
    DECODE_SLACK_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    GROUP_REDUCTION_FIELD_NUMBER: _ClassVar[int]
    KEEP_FRACTION_FIELD_NUMBER: _ClassVar[int]
    KEEP_HIGHEST_NORM_FIELD_NUMBER: _ClassVar[int]
    KERNEL_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_TOKENS_FIELD_NUMBER: _ClassVar[int]
    POLICY_FIELD_NUMBER: _ClassVar[int]
    POOLING_FIELD_NUMBER: _ClassVar[int]
    PROXY_SPAN_FIELD_NUMBER: _ClassVar[int]
    PROXY_TOKENS_FIELD_NUMBER: _ClassVar[int]
    RANDOM_SHARE_FIELD_NUMBER: _ClassVar[int]
    RECENT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SINK_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SKIP_LAYERS_FIELD_NUMBER: _ClassVar[int]
    SKIP_NO_LAYERS_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    alpha: float
    base_policy: str
    beta: float
    decode_slack: int
    delta: float
    group_reduction: GroupReduction
    keep_fraction: float
    keep_highest_norm: bool
    kernel_size: int
    max_tokens: int
    policy: str
    pooling: Pooling
    proxy_span: PositionSpan
    proxy_tokens: int
    random_share: float
    recent_tokens: int
    seed: int
    sink_tokens: int
    skip_layers: _containers.RepeatedScalarFieldContainer[int]
    skip_no_layers: bool
    temperature: float
    window: int
    def __init__(self, policy: _Optional[str] = ..., max_tokens: _Optional[int] = ..., keep_fraction: _Optional[float] = ..., seed: _Optional[int] = ..., window: _Optional[int] = ..., kernel_size: _Optional[int] = ..., pooling: _Optional[_Union[Pooling, str]] = ..., sink_tokens: _Optional[int] = ..., recent_tokens: _Optional[int] = ..., alpha: _Optional[float] = ..., delta: _Optional[float] = ..., beta: _Optional[float] = ..., proxy_span: _Optional[_Union[PositionSpan, _Mapping]] = ..., proxy_tokens: _Optional[int] = ..., temperature: _Optional[float] = ..., group_reduction: _Optional[_Union[GroupReduction, str]] = ..., skip_layers: _Optional[_Iterable[int]] = ..., base_policy: _Optional[str] = ..., decode_slack: _Optional[int] = ..., keep_highest_norm: bool = ..., random_share: _Optional[float] = ..., skip_no_layers: bool = ...) -> None: ...

class ForkRequest(_message.Message):
    __slots__ = ["new_sequence_id", "request_id", "sequence_id"]
    NEW_SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    new_sequence_id: str
    request_id: str
    sequence_id: str
    def __init__(self, sequence_id: _Optional[str] = ..., new_sequence_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ForkResponse(_message.Message):
    __slots__ = ["kv_bytes", "new_sequence_id", "position"]
    KV_BYTES_FIELD_NUMBER: _ClassVar[int]
    NEW_SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    kv_bytes: int
    new_sequence_id: str
    position: int
    def __init__(self, new_sequence_id: _Optional[str] = ..., position: _Optional[int] = ..., kv_bytes: _Optional[int] = ...) -> None: ...

class HeadPositions(_message.Message):
    __slots__ = ["positions"]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    positions: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, positions: _Optional[_Iterable[int]] = ...) -> None: ...

class InfoRequest(_message.Message):
    __slots__ = []
    def __init__(self) -> None: ...

class InfoResponse(_message.Message):
    __slots__ = ["adapter", "execution_provider", "limits", "model", "policies", "version"]
    ADAPTER_FIELD_NUMBER: _ClassVar[int]
    EXECUTION_PROVIDER_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    adapter: str
    execution_provider: str
    limits: Limits
    model: ModelInfo
    policies: _containers.RepeatedCompositeFieldContainer[PolicyInfo]
    version: str
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ..., execution_provider: _Optional[str] = ..., policies: _Optional[_Iterable[_Union[PolicyInfo, _Mapping]]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., version: _Optional[str] = ..., adapter: _Optional[str] = ...) -> None: ...

class LayerHeads(_message.Message):
    __slots__ = ["head_lengths", "head_positions"]
    HEAD_LENGTHS_FIELD_NUMBER: _ClassVar[int]
    HEAD_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    head_lengths: _containers.RepeatedScalarFieldContainer[int]
    head_positions: _containers.RepeatedCompositeFieldContainer[HeadPositions]
    def __init__(self, head_lengths: _Optional[_Iterable[int]] = ..., head_positions: _Optional[_Iterable[_Union[HeadPositions, _Mapping]]] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ["allow_past_context", "kv_bytes_budget", "max_prompt_bytes", "max_queue", "max_request_tokens", "max_sequence_tokens", "prefill_chunk_tokens", "sequence_ttl_ms", "tenant_kv_bytes_quota", "tenant_max_sequences"]
    ALLOW_PAST_CONTEXT_FIELD_NUMBER: _ClassVar[int]
    KV_BYTES_BUDGET_FIELD_NUMBER: _ClassVar[int]
    MAX_PROMPT_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUE_FIELD_NUMBER: _ClassVar[int]
    MAX_REQUEST_TOKENS_FIELD_NUMBER: _ClassVar[int]
    MAX_SEQUENCE_TOKENS_FIELD_NUMBER: _ClassVar[int]
    PREFILL_CHUNK_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_TTL_MS_FIELD_NUMBER: _ClassVar[int]
    TENANT_KV_BYTES_QUOTA_FIELD_NUMBER: _ClassVar[int]
    TENANT_MAX_SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    allow_past_context: bool
    kv_bytes_budget: int
    max_prompt_bytes: int
    max_queue: int
    max_request_tokens: int
    max_sequence_tokens: int
    prefill_chunk_tokens: int
    sequence_ttl_ms: int
    tenant_kv_bytes_quota: int
    tenant_max_sequences: int
    def __init__(self, kv_bytes_budget: _Optional[int] = ..., max_sequence_tokens: _Optional[int] = ..., allow_past_context: bool = ..., prefill_chunk_tokens: _Optional[int] = ..., sequence_ttl_ms: _Optional[int] = ..., tenant_kv_bytes_quota: _Optional[int] = ..., tenant_max_sequences: _Optional[int] = ..., max_request_tokens: _Optional[int] = ..., max_prompt_bytes: _Optional[int] = ..., max_queue: _Optional[int] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ["architecture", "bos_token_id", "context_length", "dtype", "eos_token_id", "head_size", "heads", "hidden_size", "kv_dtype", "kv_heads", "layers", "name", "vocab_size", "weight_dtype"]
    ARCHITECTURE_FIELD_NUMBER: _ClassVar[int]
    BOS_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    EOS_TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    HEADS_FIELD_NUMBER: _ClassVar[int]
    HEAD_SIZE_FIELD_NUMBER: _ClassVar[int]
    HIDDEN_SIZE_FIELD_NUMBER: _ClassVar[int]
    KV_DTYPE_FIELD_NUMBER: _ClassVar[int]
    KV_HEADS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    VOCAB_SIZE_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_DTYPE_FIELD_NUMBER: _ClassVar[int]
    architecture: str
    bos_token_id: int
    context_length: int
    dtype: str
    eos_token_id: int
    head_size: int
    heads: int
    hidden_size: int
    kv_dtype: str
    kv_heads: int
    layers: int
    name: str
    vocab_size: int
    weight_dtype: str
    def __init__(self, name: _Optional[str] = ..., architecture: _Optional[str] = ..., layers: _Optional[int] = ..., heads: _Optional[int] = ..., kv_heads: _Optional[int] = ..., head_size: _Optional[int] = ..., hidden_size: _Optional[int] = ..., vocab_size: _Optional[int] = ..., context_length: _Optional[int] = ..., dtype: _Optional[str] = ..., kv_dtype: _Optional[str] = ..., bos_token_id: _Optional[int] = ..., eos_token_id: _Optional[int] = ..., weight_dtype: _Optional[str] = ...) -> None: ...

class OffloadRequest(_message.Message):
    __slots__ = ["request_id", "sequence_id"]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sequence_id: str
    def __init__(self, sequence_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class OffloadResponse(_message.Message):
    __slots__ = ["chunks", "freed_bytes", "sequence_id", "stored_bytes"]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    FREED_BYTES_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    chunks: int
    freed_bytes: int
    sequence_id: str
    stored_bytes: int
    def __init__(self, sequence_id: _Optional[str] = ..., stored_bytes: _Optional[int] = ..., chunks: _Optional[int] = ..., freed_bytes: _Optional[int] = ...) -> None: ...

class PolicyInfo(_message.Message):
    __slots__ = ["description", "minimum_budget_tokens", "name", "parameters"]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_BUDGET_TOKENS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    description: str
    minimum_budget_tokens: int
    name: str
    parameters: _containers.RepeatedCompositeFieldContainer[PolicyParameter]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., parameters: _Optional[_Iterable[_Union[PolicyParameter, _Mapping]]] = ..., minimum_budget_tokens: _Optional[int] = ...) -> None: ...

class PolicyParameter(_message.Message):
    __slots__ = ["default_value", "description", "name"]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    default_value: str
    description: str
    name: str
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., default_value: _Optional[str] = ...) -> None: ...

class PositionSpan(_message.Message):
    __slots__ = ["end", "start"]
    END_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    end: int
    start: int
    def __init__(self, start: _Optional[int] = ..., end: _Optional[int] = ...) -> None: ...

class PrefillRequest(_message.Message):
    __slots__ = ["eviction", "messages", "request_id", "return_distribution", "return_logprobs", "sequence_id", "text", "token_ids", "top_logprobs"]
    EVICTION_FIELD_NUMBER: _ClassVar[int]
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    RETURN_DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    RETURN_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    TOP_LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    eviction: EvictionSpec
    messages: _containers.RepeatedCompositeFieldContainer[ChatMessage]
    request_id: str
    return_distribution: bool
    return_logprobs: bool
    sequence_id: str
    text: str
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    top_logprobs: int
    def __init__(self, sequence_id: _Optional[str] = ..., token_ids: _Optional[_Iterable[int]] = ..., text: _Optional[str] = ..., eviction: _Optional[_Union[EvictionSpec, _Mapping]] = ..., return_logprobs: bool = ..., top_logprobs: _Optional[int] = ..., messages: _Optional[_Iterable[_Union[ChatMessage, _Mapping]]] = ..., request_id: _Optional[str] = ..., return_distribution: bool = ...) -> None: ...

class PrefillResponse(_message.Message):
    __slots__ = ["eviction", "kv_bytes", "logprobs", "position", "prompt_tokens", "sequence_id", "token_ids"]
    EVICTION_FIELD_NUMBER: _ClassVar[int]
    KV_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOGPROBS_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    PROMPT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    eviction: EvictionResult
    kv_bytes: int
    logprobs: _containers.RepeatedCompositeFieldContainer[TokenLogprob]
    position: int
    prompt_tokens: int
    sequence_id: str
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, sequence_id: _Optional[str] = ..., prompt_tokens: _Optional[int] = ..., position: _Optional[int] = ..., kv_bytes: _Optional[int] = ..., eviction: _Optional[_Union[EvictionResult, _Mapping]] = ..., token_ids: _Optional[_Iterable[int]] = ..., logprobs: _Optional[_Iterable[_Union[TokenLogprob, _Mapping]]] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ["request_id", "sequence_id"]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    sequence_id: str
    def __init__(self, sequence_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ["found", "freed_bytes"]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    FREED_BYTES_FIELD_NUMBER: _ClassVar[int]
    found: bool
    freed_bytes: int
    def __init__(self, found: bool = ..., freed_bytes: _Optional[int] = ...) -> None: ...

class Sampling(_message.Message):
    __slots__ = ["seed", "temperature", "top_k", "top_p"]
    SEED_FIELD_NUMBER: _ClassVar[int]
    TEMPERATURE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    TOP_P_FIELD_NUMBER: _ClassVar[int]
    seed: int
    temperature: float
    top_k: int
    top_p: float
    def __init__(self, temperature: _Optional[float] = ..., top_k: _Optional[int] = ..., top_p: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class SequenceStats(_message.Message):
    __slots__ = ["decode_budget_tokens", "decode_policy", "entries", "idle_ms", "kv_bytes", "kv_bytes_device", "layers", "lazy_layers", "position", "residency", "sequence_id", "stored_bytes", "token_ids"]
    DECODE_BUDGET_TOKENS_FIELD_NUMBER: _ClassVar[int]
    DECODE_POLICY_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    IDLE_MS_FIELD_NUMBER: _ClassVar[int]
    KV_BYTES_DEVICE_FIELD_NUMBER: _ClassVar[int]
    KV_BYTES_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    LAZY_LAYERS_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    RESIDENCY_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    STORED_BYTES_FIELD_NUMBER: _ClassVar[int]
    TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    decode_budget_tokens: int
    decode_policy: str
    entries: int
    idle_ms: int
    kv_bytes: int
    kv_bytes_device: int
    layers: _containers.RepeatedCompositeFieldContainer[LayerHeads]
    lazy_layers: _containers.RepeatedScalarFieldContainer[int]
    position: int
    residency: Residency
    sequence_id: str
    stored_bytes: int
    token_ids: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, sequence_id: _Optional[str] = ..., position: _Optional[int] = ..., kv_bytes: _Optional[int] = ..., entries: _Optional[int] = ..., layers: _Optional[_Iterable[_Union[LayerHeads, _Mapping]]] = ..., idle_ms: _Optional[int] = ..., lazy_layers: _Optional[_Iterable[int]] = ..., decode_policy: _Optional[str] = ..., decode_budget_tokens: _Optional[int] = ..., kv_bytes_device: _Optional[int] = ..., token_ids: _Optional[_Iterable[int]] = ..., residency: _Optional[_Union[Residency, str]] = ..., stored_bytes: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ["include_positions", "include_token_ids", "sequence_id"]
    INCLUDE_POSITIONS_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_TOKEN_IDS_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    include_positions: bool
    include_token_ids: bool
    sequence_id: str
    def __init__(self, sequence_id: _Optional[str] = ..., include_positions: bool = ..., include_token_ids: bool = ...) -> None: ...

class StatsResponse(_message.Message):
    __slots__ = ["kv_bytes_batch_arena", "kv_bytes_budget", "kv_bytes_device", "kv_bytes_pooled", "kv_bytes_used", "kv_location", "sequence_count", "sequences", "tenant", "tenant_kv_bytes", "tenant_kv_bytes_quota", "tenant_sequence_count", "tenant_sequence_quota"]
    KV_BYTES_BATCH_ARENA_FIELD_NUMBER: _ClassVar[int]
    KV_BYTES_BUDGET_FIELD_NUMBER: _ClassVar[int]
    KV_BYTES_DEVICE_FIELD_NUMBER: _ClassVar[int]
    KV_BYTES_POOLED_FIELD_NUMBER: _ClassVar[int]
    KV_BYTES_USED_FIELD_NUMBER: _ClassVar[int]
    KV_LOCATION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCES_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TENANT_FIELD_NUMBER: _ClassVar[int]
    TENANT_KV_BYTES_FIELD_NUMBER: _ClassVar[int]
    TENANT_KV_BYTES_QUOTA_FIELD_NUMBER: _ClassVar[int]
    TENANT_SEQUENCE_COUNT_FIELD_NUMBER: _ClassVar[int]
    TENANT_SEQUENCE_QUOTA_FIELD_NUMBER: _ClassVar[int]
    kv_bytes_batch_arena: int
    kv_bytes_budget: int
    kv_bytes_device: int
    kv_bytes_pooled: int
    kv_bytes_used: int
    kv_location: str
    sequence_count: int
    sequences: _containers.RepeatedCompositeFieldContainer[SequenceStats]
    tenant: str
    tenant_kv_bytes: int
    tenant_kv_bytes_quota: int
    tenant_sequence_count: int
    tenant_sequence_quota: int
    def __init__(self, kv_bytes_used: _Optional[int] = ..., kv_bytes_budget: _Optional[int] = ..., sequence_count: _Optional[int] = ..., sequences: _Optional[_Iterable[_Union[SequenceStats, _Mapping]]] = ..., kv_bytes_pooled: _Optional[int] = ..., tenant: _Optional[str] = ..., tenant_kv_bytes: _Optional[int] = ..., tenant_sequence_count: _Optional[int] = ..., tenant_kv_bytes_quota: _Optional[int] = ..., tenant_sequence_quota: _Optional[int] = ..., kv_bytes_batch_arena: _Optional[int] = ..., kv_bytes_device: _Optional[int] = ..., kv_location: _Optional[str] = ...) -> None: ...

class TokenLogprob(_message.Message):
    __slots__ = ["distribution", "logprob", "token_id", "top"]
    DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    LOGPROB_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    distribution: _containers.RepeatedScalarFieldContainer[float]
    logprob: float
    token_id: int
    top: _containers.RepeatedCompositeFieldContainer[TopLogprob]
    def __init__(self, token_id: _Optional[int] = ..., logprob: _Optional[float] = ..., top: _Optional[_Iterable[_Union[TopLogprob, _Mapping]]] = ..., distribution: _Optional[_Iterable[float]] = ...) -> None: ...

class TopLogprob(_message.Message):
    __slots__ = ["logprob", "token_id"]
    LOGPROB_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    logprob: float
    token_id: int
    def __init__(self, token_id: _Optional[int] = ..., logprob: _Optional[float] = ...) -> None: ...

class TruncateRequest(_message.Message):
    __slots__ = ["length", "request_id", "sequence_id"]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    length: int
    request_id: str
    sequence_id: str
    def __init__(self, sequence_id: _Optional[str] = ..., length: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class TruncateResponse(_message.Message):
    __slots__ = ["dropped_tokens", "kv_bytes", "position", "sequence_id"]
    DROPPED_TOKENS_FIELD_NUMBER: _ClassVar[int]
    KV_BYTES_FIELD_NUMBER: _ClassVar[int]
    POSITION_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_ID_FIELD_NUMBER: _ClassVar[int]
    dropped_tokens: int
    kv_bytes: int
    position: int
    sequence_id: str
    def __init__(self, sequence_id: _Optional[str] = ..., position: _Optional[int] = ..., dropped_tokens: _Optional[int] = ..., kv_bytes: _Optional[int] = ...) -> None: ...

class Residency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class GroupReduction(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class Pooling(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []

class FinishReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = []
