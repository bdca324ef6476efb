"""How much memory a model needs with a given context, worked out from its GGUF header."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.core.errors import InsufficientMemoryError, InvalidSettingError

if TYPE_CHECKING:
    from app.core.gguf_file import GGUFInfo

KV_TYPE_BYTES: dict[str, float] = {
    "f32": 4,
    "f16": 2,
    "bf16": 2,
    "q8_0": 34 / 32,
    "q5_1": 24 / 32,
    "q5_0": 22 / 32,
    "q4_1": 20 / 32,
    "q4_0": 18 / 32,
    "iq4_nl": 18 / 32,
}
"""Bytes per element of each KV-cache type llama.cpp offers (block size / 32 for quants)."""

MIN_COMPUTE_BYTES = 32 * 2**20
"""Floor of the compute estimate: graph metadata, output buffer and scratch of small models."""

_UNQUANTIZED_KV_TYPES = frozenset({"f32", "f16", "bf16"})
_SMALLEST_SUGGESTED_CONTEXT = 512
_LOW_BITS_PER_WEIGHT = 5.0  # at or below this, suggesting "Q4_K_M" would not help


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a loaded model needs, by what they hold."""

    weights: int
    kv_cache: int
    compute: int

    @property
    def total(self) -> int:
        """All of it together."""
        return self.weights + self.kv_cache + self.compute


def estimate_memory(
    info: GGUFInfo,
    n_ctx: int,
    type_k: str = "f16",
    type_v: str = "f16",
    n_batch: int = 512,
    *,
    flash_attn: bool = False,
) -> MemoryEstimate:
    """Estimate the memory a model needs with a context of `n_ctx` tokens.

    - weights: the tensor data, all of which llama.cpp maps or loads.
    - kv_cache: n_layer * n_ctx * n_head_kv * (head_dim_k * bytes(type_k) +
      head_dim_v * bytes(type_v)).
    - compute: llama.cpp sizes its compute buffer for the worst-case micro-batch of
      `n_batch` tokens. Its allocator reuses memory between graph nodes (softmax even runs
      in place), so the peak is the biggest intermediate plus a few activations. Per token,
      in float32: the largest of the logits (n_vocab, reserved for every token of that
      batch), the attention scores without flash attention (n_head * n_ctx) and the
      feed-forward activations (about 12 * n_embd), plus about 8 * n_embd of residual
      activations; at least `MIN_COMPUTE_BYTES`. It errs on the high side.

    Args:
        info: The model's header.
        n_ctx: Context size in tokens; 0 means the model's own context length.
        type_k: KV-cache type of keys, a key of `KV_TYPE_BYTES`.
        type_v: KV-cache type of values, a key of `KV_TYPE_BYTES`.
        n_batch: Tokens per micro-batch (llama.cpp's n_ubatch).
        flash_attn: Whether flash attention is on; llama.cpp needs it for a quantized
            `type_v`, so such a type implies it.

    Raises:
        InvalidSettingError: An unknown KV type, or a context or batch size below 1.
    """
    n_ctx = n_ctx or info.context_length
    if n_ctx < 1:
        raise InvalidSettingError(f"The context size must be at least 1 token, not {n_ctx}.")
    if n_batch < 1:
        raise InvalidSettingError(f"The batch size must be at least 1 token, not {n_batch}.")
    per_token_kv = info.head_dim_k * _kv_bytes(type_k) + info.head_dim_v * _kv_bytes(type_v)
    kv_cache = math.ceil(info.n_layer * n_ctx * info.n_head_kv * per_token_kv)
    uses_flash_attn = flash_attn or type_v.lower() not in _UNQUANTIZED_KV_TYPES
    attention_scores = 0 if uses_flash_attn else info.n_head * n_ctx
    feed_forward = 12 * info.n_embd
    floats_per_token = max(info.n_vocab, attention_scores, feed_forward) + 8 * info.n_embd
    compute = max(n_batch * floats_per_token * 4, MIN_COMPUTE_BYTES)
    return MemoryEstimate(weights=info.tensor_bytes, kv_cache=kv_cache, compute=compute)


def check_fits(
    info: GGUFInfo,
    n_ctx: int,
    available: int,
    type_k: str = "f16",
    type_v: str = "f16",
    *,
    flash_attn: bool = False,
) -> MemoryEstimate:
    """Return the estimate if the model fits in `available` bytes, else explain what to do.

    Arguments are those of `estimate_memory`, and `available`: bytes of memory free.

    Raises:
        InsufficientMemoryError: The estimate exceeds `available`.
        InvalidSettingError: As `estimate_memory`.
    """

    def estimate_for(context: int) -> MemoryEstimate:
        return estimate_memory(info, context, type_k, type_v, flash_attn=flash_attn)

    estimate = estimate_for(n_ctx)
    if estimate.total <= available:
        return estimate
    n_ctx = n_ctx or info.context_length
    smaller = "a smaller quantization (e.g. Q4_K_M)"
    if info.n_params and info.tensor_bytes * 8 / info.n_params <= _LOW_BITS_PER_WEIGHT:
        smaller = "a smaller model"
    fitting = next(
        (context for context in _halvings(n_ctx) if estimate_for(context).total <= available),
        None,
    )
    if fitting is None:
        advice = f"Close other programs, or choose {smaller}."
    else:
        advice = (
            f"Close other programs, choose a smaller context (about {fitting:,} tokens would "
            f"fit) or {smaller}."
        )
    message = (
        f"{info.name} needs about {format_bytes(estimate.total)} of memory with a "
        f"{n_ctx:,}-token context, but only {format_bytes(max(available, 0))} is free. " + advice
    )
    raise InsufficientMemoryError(
        message, path=info.path, needed=estimate.total, available=available
    )


def _halvings(n_ctx: int) -> Iterator[int]:
    """n_ctx / 2, n_ctx / 4, ... down to the smallest context worth suggesting."""
    candidate = n_ctx // 2
    while candidate >= _SMALLEST_SUGGESTED_CONTEXT:
        yield candidate
        candidate //= 2


def _kv_bytes(type_name: str) -> float:
    try:
        return KV_TYPE_BYTES[type_name.lower()]
    except KeyError:
        choices = ", ".join(KV_TYPE_BYTES)
        raise InvalidSettingError(
            f"Unknown KV cache type '{type_name}': choose one of {choices}."
        ) from None


def format_bytes(n: int) -> str:
    """Format a byte count for people, in binary units: "512 B", "98.4 MiB", "3.2 GiB"."""
    if abs(n) < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if abs(value) < 1023.95:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} PiB"
