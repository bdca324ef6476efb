"""Header values a GGUF can hold that make no sense: refused when they would crash
llama.cpp, warned about when the model loads but answers nonsense.

Found by the fuzz corpus (`tests/gguf_fuzz.py`): llama.cpp aborts on a `block_count` of 0
or above its layer limit, on a negative or NaN norm epsilon and on a layer with query heads
but no key/value heads; it loads a model whose `rope.freq_base` is 0, negative or NaN (and
then computes NaN), whose BOS or EOS id lies outside its vocabulary, or whose per-layer
head count is 0 for some layer. These checks read only metadata, so the library can show
them without loading anything.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

from app.core.errors import ModelFileError

MAX_LAYERS = 512
"""llama.cpp's LLAMA_MAX_LAYERS: more blocks than this fail an assert while loading."""
NO_TOKEN = 2**32 - 1
"""A token id of 0xFFFFFFFF (-1 as llama.cpp reads it) means "none", not a bad id."""
RECURRENT_ARCHITECTURES = frozenset(
    {
        "mamba",
        "mamba2",
        "jamba",
        "falcon-h1",
        "granitehybrid",
        "lfm2",
        "lfm2moe",
        "nemotron_h",
        "nemotron_h_moe",
        "plamo2",
        "qwen3next",
        "kimi-linear",
        "rwkv6",
        "rwkv6qwen2",
        "rwkv7",
        "arwkv7",
    }
)
"""Architectures with layers that have no attention: a head count of 0 is normal there."""

Metadata = Mapping[str, object]


def check_values(
    path: Path, architecture: str, metadata: Metadata, n_vocab: int
) -> tuple[str, ...]:
    """Refuse values that would crash llama.cpp; return warnings for nonsense that loads.

    Args:
        path: The file (named in messages).
        architecture: general.architecture, the prefix of the model's own keys.
        metadata: Every key and value of the header.
        n_vocab: Tokens in the vocabulary (0 if unknown).

    Raises:
        ModelFileError: A value that makes llama.cpp abort; the message names the key.
    """
    _refuse_crashers(path, architecture, metadata)
    warnings = [
        *_rope_warnings(path, architecture, metadata),
        *_special_token_warnings(path, metadata, n_vocab),
        *_head_count_warnings(path, architecture, metadata),
    ]
    return tuple(warnings)


def _refuse(path: Path, key: str, value: object, why: str) -> ModelFileError:
    return ModelFileError(
        f"'{path.name}' has {key} = {_show(value)}, {why}: llama.cpp would crash loading it, "
        "so Hearth did not. The file is damaged or was made wrongly: download it again or "
        "pick another conversion of this model.",
        path=path,
    )


def _refuse_crashers(path: Path, arch: str, metadata: Metadata) -> None:
    key = f"{arch}.block_count"
    blocks = metadata.get(key)
    if _is_int(blocks) and not 0 < int(blocks) <= MAX_LAYERS:  # type: ignore[call-overload]
        raise _refuse(path, key, blocks, f"but a model needs 1 to {MAX_LAYERS} layers")
    for name in ("layer_norm_rms_epsilon", "layer_norm_epsilon"):
        key = f"{arch}.attention.{name}"
        eps = metadata.get(key)
        if _is_float(eps) and not float(eps) >= 0:  # type: ignore[arg-type]
            raise _refuse(path, key, eps, "but a norm's epsilon must be a small positive number")
    if arch in RECURRENT_ARCHITECTURES:
        return
    heads = _per_layer(metadata.get(f"{arch}.attention.head_count"))
    key = f"{arch}.attention.head_count_kv"
    kv_heads = _per_layer(metadata.get(key))
    if heads is None or kv_heads is None:
        return
    n = max(len(heads), len(kv_heads))
    if len(heads) not in (1, n) or len(kv_heads) not in (1, n):
        return  # arrays of the wrong length: llama.cpp refuses those cleanly
    for layer in range(n):
        q = heads[layer if len(heads) > 1 else 0]
        kv = kv_heads[layer if len(kv_heads) > 1 else 0]
        if q > 0 and kv == 0:
            raise _refuse(
                path,
                key,
                metadata.get(key),
                f"so layer {layer} has query heads but no key/value heads",
            )


def _rope_warnings(path: Path, arch: str, metadata: Metadata) -> list[str]:
    key = f"{arch}.rope.freq_base"
    base = metadata.get(key)
    if _is_float(base) or _is_int(base):
        value = float(base)  # type: ignore[arg-type]
        if not math.isfinite(value) or value <= 0:
            return [
                f"'{path.name}' has {key} = {_show(base)}: a rope base must be a positive "
                "number (usually 10000 or more), so positions are encoded wrongly and replies "
                "will be nonsense. Download the model again or pick another conversion."
            ]
    return []


def _special_token_warnings(path: Path, metadata: Metadata, n_vocab: int) -> list[str]:
    if n_vocab <= 0:
        return []
    warnings = []
    for name, role in (("bos", "beginning-of-text"), ("eos", "end-of-text")):
        key = f"tokenizer.ggml.{name}_token_id"
        token = metadata.get(key)
        if _is_int(token) and n_vocab <= int(token) < NO_TOKEN:  # type: ignore[call-overload]
            warnings.append(
                f"'{path.name}' has {key} = {token}, but its vocabulary has only {n_vocab:,} "
                f"tokens: its {role} token does not exist, so "
                + (
                    "prompts start without it."
                    if name == "bos"
                    else "replies may not stop on their own (set a token limit)."
                )
                + " Pick another conversion of this model if replies look wrong."
            )
    return warnings


def _head_count_warnings(path: Path, arch: str, metadata: Metadata) -> list[str]:
    if arch in RECURRENT_ARCHITECTURES:
        return []
    warnings = []
    for name in ("head_count", "head_count_kv"):
        key = f"{arch}.attention.{name}"
        per_layer = _per_layer(metadata.get(key))
        if per_layer is None or len(per_layer) < 2 or 0 not in per_layer:
            continue
        zeros = [str(i) for i, n in enumerate(per_layer) if n == 0]
        warnings.append(
            f"'{path.name}' has {key} = 0 for layer{'s' if len(zeros) > 1 else ''} "
            f"{', '.join(zeros[:8])}{'…' if len(zeros) > 8 else ''}: those layers have no "
            "attention, which a model of this architecture needs; replies will likely be "
            "nonsense. Download the model again or pick another conversion."
        )
    return warnings


def _per_layer(value: object) -> list[int] | None:
    """A head count as a list (one item when the same for every layer); None if absent."""
    import numpy as np  # imported with a header read, not with the GUI

    if isinstance(value, np.ndarray) and value.dtype.kind in "iu" and value.size:
        return [int(v) for v in value]
    if _is_int(value):
        return [int(value)]  # type: ignore[call-overload]
    return None


def _is_int(value: object) -> bool:
    import numpy as np

    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _is_float(value: object) -> bool:
    import numpy as np

    return isinstance(value, (float, np.floating))


def _show(value: object) -> str:
    import numpy as np

    if isinstance(value, np.ndarray):
        items = ", ".join(str(v) for v in value[:8].tolist())
        return f"[{items}{', …' if value.size > 8 else ''}]"
    return repr(value) if isinstance(value, str) else str(value)
