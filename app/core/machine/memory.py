"""How much memory a model needs with a given context, worked out from its GGUF header."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from app.core.errors import InsufficientMemoryError, InvalidSettingError
from app.core.units import format_bytes

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

CONTEXT_PADDING = 256
"""llama.cpp rounds the context (the KV cache's cells) up to a multiple of this."""

_UNQUANTIZED_KV_TYPES = frozenset({"f32", "f16", "bf16"})
_SMALLEST_SUGGESTED_CONTEXT = 512
_LOW_BITS_PER_WEIGHT = 5.0  # at or below this, suggesting "Q4_K_M" would not help
_F32 = 4
_F16 = 2
_FFN_WIDTH_GUESS = 4  # feed-forward width per embedding width when the header has none


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a loaded model needs, by what they hold."""

    weights: int
    kv_cache: int
    compute: int
    output: int = 0

    @property
    def total(self) -> int:
        """All of it together."""
        return self.weights + self.kv_cache + self.compute + self.output


def padded_context(n_ctx: int) -> int:
    """The context llama.cpp actually allocates for `n_ctx` tokens (KV cache cells)."""
    return -(-n_ctx // CONTEXT_PADDING) * CONTEXT_PADDING


def kv_cache_bytes(info: GGUFInfo, n_ctx: int, type_k: str = "f16", type_v: str = "f16") -> int:
    """Bytes of the KV cache of all layers for `n_ctx` tokens (padded as llama.cpp does).

    n_layer * cells * n_head_kv * (head_dim_k * bytes(type_k) + head_dim_v * bytes(type_v)).

    Raises:
        InvalidSettingError: An unknown KV type.
    """
    per_token = info.head_dim_k * _kv_bytes(type_k) + info.head_dim_v * _kv_bytes(type_v)
    return math.ceil(info.n_layer * padded_context(n_ctx) * info.n_head_kv * per_token)


def uses_flash_attention(type_v: str, flash_attn: bool) -> bool:
    """Whether llama.cpp runs flash attention: asked for, or needed by a quantized V cache."""
    return flash_attn or type_v.lower() not in _UNQUANTIZED_KV_TYPES


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
    - kv_cache: see `kv_cache_bytes`.
    - compute: llama.cpp sizes its compute buffer for the worst-case micro-batch of
      u = min(n_batch, n_ctx) tokens; its allocator reuses memory between graph nodes, so
      the buffer is the peak of what is alive at once, in float32 per token of u:
      the logits (n_vocab, plus about 3 * n_embd of activations); without flash attention
      the attention scores (n_head * cells) with their f32 mask (cells) and about
      5 * n_embd + 2 * n_head_kv * head_dim of activations; the feed-forward step
      (3 * n_ff + 4 * n_embd), with flash attention plus its f16 mask (cells * 2 bytes),
      which stays allocated under it. Measured against llama.cpp on the CPU this is within
      a few percent when the logits or the attention scores dominate (real models);
      on toy models whose whole graph is a few MiB the allocator's layout moves the peak
      by a few activations (up to about 20%).
    - output: the logits of one sequence (n_vocab float32), kept between decodes.

    Args:
        info: The model's header.
        n_ctx: Context size in tokens; 0 means the model's own context length.
        type_k: KV-cache type of keys, a key of `KV_TYPE_BYTES`.
        type_v: KV-cache type of values, a key of `KV_TYPE_BYTES`.
        n_batch: Tokens per micro-batch (llama.cpp's n_ubatch).
        flash_attn: Whether flash attention is on; llama.cpp needs it for a quantized
            `type_v`, so such a type implies it. llama.cpp's "auto" turns it on wherever the
            backend supports it (the CPU does).

    Raises:
        InvalidSettingError: An unknown KV type, or a context or batch size below 1.
    """
    n_ctx = n_ctx or info.context_length
    if n_ctx < 1:
        raise InvalidSettingError(f"The context size must be at least 1 token, not {n_ctx}.")
    if n_batch < 1:
        raise InvalidSettingError(f"The batch size must be at least 1 token, not {n_batch}.")
    kv_cache = kv_cache_bytes(info, n_ctx, type_k, type_v)
    compute = _compute_bytes(info, n_ctx, n_batch, uses_flash_attention(type_v, flash_attn))
    return MemoryEstimate(
        weights=info.tensor_bytes,
        kv_cache=kv_cache,
        compute=compute,
        output=info.n_vocab * _F32,
    )


def _compute_bytes(info: GGUFInfo, n_ctx: int, n_batch: int, flash: bool) -> int:
    """Peak of llama.cpp's compute buffer for one micro-batch (see `estimate_memory`)."""
    tokens = min(n_batch, n_ctx)
    cells = padded_context(n_ctx)
    n_embd = info.n_embd
    n_ff = info.n_ff or _FFN_WIDTH_GUESS * n_embd
    logits = (info.n_vocab + 3 * n_embd) * _F32
    feed_forward = (3 * n_ff + 4 * n_embd) * _F32
    if flash:
        feed_forward += cells * _F16  # the f16 mask
        attention = 0
    else:
        scores = info.n_head * cells + cells  # the scores and their f32 mask
        activations = 5 * n_embd + 2 * info.n_head_kv * info.head_dim_k
        attention = (scores + activations) * _F32
    return tokens * max(logits, attention, feed_forward)


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
