"""PyTorch Llama with exactly kvwarden's forward pass, and llama2.c legacy-v0 export.

Forward (the same as src/model/graph/llama-step-graph.ts): token embedding; per layer
x += wo(attention(rmsnorm(x) * rms_att)), x += w2(silu(w1 y) * w3 y) with y = rmsnorm(x) * rms_ffn;
logits = classifier(rmsnorm(x) * rms_final). RMSNorm eps 1e-5. RoPE theta 10000 on interleaved
pairs (dims 2i, 2i+1 rotated by pos / theta^(2i/hs)) of q and k at absolute positions.
Grouped-query attention: query head h reads KV head h // (n_heads / n_kv_heads). Scores scaled
by 1/sqrt(hs), causal. Classifier tied to the embedding.
"""

from __future__ import annotations

import math
import struct
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class Config:
    dim: int = 128
    hidden_dim: int = 352
    n_layers: int = 4
    n_heads: int = 8
    n_kv_heads: int = 2
    vocab_size: int = 509
    seq_len: int = 1024
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads

    def to_dict(self) -> dict:
        return asdict(self)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(cfg: Config, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [T, hs/2] for absolute `positions` [T]."""
    hs = cfg.head_size
    inv = 1.0 / (cfg.rope_theta ** (torch.arange(0, hs, 2, dtype=torch.float64) / hs))
    angles = positions.to(torch.float64)[:, None] * inv[None, :]
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, T, H, hs]; rotates the interleaved pairs (2i, 2i+1)."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    even, odd = pairs[..., 0], pairs[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    return torch.stack((even * c - odd * s, even * s + odd * c), dim=-1).reshape(x.shape)


class Attention(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        hs = cfg.head_size
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * hs, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * hs, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * hs, bias=False)
        self.wo = nn.Linear(cfg.n_heads * hs, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        cfg = self.cfg
        B, T, _ = x.shape
        hs = cfg.head_size
        group = cfg.n_heads // cfg.n_kv_heads
        q = apply_rope(self.wq(x).view(B, T, cfg.n_heads, hs), cos, sin)
        k = apply_rope(self.wk(x).view(B, T, cfg.n_kv_heads, hs), cos, sin)
        v = self.wv(x).view(B, T, cfg.n_kv_heads, hs)
        # [B, Hkv, G, T, hs] for queries; query head h = kv * G + g reads KV head kv = h // G.
        q = q.transpose(1, 2).reshape(B, cfg.n_kv_heads, group, T, hs) * (1.0 / math.sqrt(hs))
        k = k.transpose(1, 2).unsqueeze(2)
        v = v.transpose(1, 2).unsqueeze(2)
        scores = torch.matmul(q, k.transpose(-1, -2)) + mask
        out = torch.matmul(torch.softmax(scores, dim=-1), v)  # [B, Hkv, G, T, hs]
        out = out.reshape(B, cfg.n_heads, T, hs).transpose(1, 2).reshape(B, T, cfg.n_heads * hs)
        return self.wo(out)


class FeedForward(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.w1 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)
        self.w2 = nn.Linear(cfg.hidden_dim, cfg.dim, bias=False)
        self.w3 = nn.Linear(cfg.dim, cfg.hidden_dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.attention_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x, cos, sin, mask):
        x = x + self.attention(self.attention_norm(x), cos, sin, mask)
        return x + self.feed_forward(self.ffn_norm(x))


class Llama(nn.Module):
    def __init__(self, cfg: Config):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("wo.weight") or name.endswith("w2.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(self, tokens: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Logits [B, T, V] for tokens [B, T] at positions start..start+T-1 (causal)."""
        B, T = tokens.shape
        cos, sin = rope_tables(self.cfg, torch.arange(start, start + T))
        mask = torch.full((T, T), float("-inf")).triu(1)
        x = self.tok_embeddings(tokens)
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return F.linear(self.norm(x), self.tok_embeddings.weight)


def export_llama2c(model: Llama, path: str) -> None:
    """Writes the legacy v0 checkpoint kvwarden loads (src/model/checkpoints/llama2c-checkpoint.ts)."""
    cfg = model.cfg
    layers = model.layers

    def cat(tensors) -> bytes:
        return b"".join(t.detach().to(torch.float32).contiguous().numpy().tobytes() for t in tensors)

    hs = cfg.head_size
    cos, sin = rope_tables(cfg, torch.arange(cfg.seq_len))
    with open(path, "wb") as f:
        f.write(struct.pack("<7i", cfg.dim, cfg.hidden_dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.vocab_size, cfg.seq_len))
        f.write(cat([model.tok_embeddings.weight]))
        f.write(cat(l.attention_norm.weight for l in layers))
        f.write(cat(l.attention.wq.weight for l in layers))
        f.write(cat(l.attention.wk.weight for l in layers))
        f.write(cat(l.attention.wv.weight for l in layers))
        f.write(cat(l.attention.wo.weight for l in layers))
        f.write(cat(l.ffn_norm.weight for l in layers))
        f.write(cat(l.feed_forward.w1.weight for l in layers))
        f.write(cat(l.feed_forward.w2.weight for l in layers))
        f.write(cat(l.feed_forward.w3.weight for l in layers))
        f.write(cat([model.norm.weight]))
        # Legacy RoPE tables [seq_len, hs/2] each; kvwarden skips them, llama2.c's old runners read them.
        assert cos.shape == (cfg.seq_len, hs // 2)
        f.write(cat([cos, sin]))
        # vocab_size > 0 in the header: classifier tied to the embedding, nothing more to write.


def load_llama2c(path: str) -> Llama:
    """Reads a checkpoint written by export_llama2c back into a model (round-trip check)."""
    with open(path, "rb") as f:
        data = f.read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack_from("<7i", data, 0)
    cfg = Config(dim=dim, hidden_dim=hidden, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv, vocab_size=abs(vocab), seq_len=seq_len)
    floats = torch.frombuffer(bytearray(data[28:]), dtype=torch.float32)
    model = Llama(cfg)
    offset = 0

    def take(*shape):
        nonlocal offset
        n = math.prod(shape)
        t = floats[offset : offset + n].view(*shape).clone()
        offset += n
        return t

    hs = cfg.head_size
    L = n_layers
    with torch.no_grad():
        model.tok_embeddings.weight.copy_(take(cfg.vocab_size, dim))
        for name, shape in [
            ("attention_norm.weight", (dim,)), ("attention.wq.weight", (n_heads * hs, dim)), ("attention.wk.weight", (n_kv * hs, dim)),
            ("attention.wv.weight", (n_kv * hs, dim)), ("attention.wo.weight", (dim, n_heads * hs)), ("ffn_norm.weight", (dim,)),
            ("feed_forward.w1.weight", (hidden, dim)), ("feed_forward.w2.weight", (dim, hidden)), ("feed_forward.w3.weight", (hidden, dim)),
        ]:
            stacked = take(L, *shape)
            for l in range(L):
                model.layers[l].get_parameter(name).copy_(stacked[l])
        model.norm.weight.copy_(take(dim))
        take(seq_len * hs)  # RoPE tables
    assert offset == floats.numel() or vocab < 0, "unexpected trailing data"
    return model
