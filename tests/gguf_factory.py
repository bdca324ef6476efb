"""Build tiny GGUF files for fast tests: a loadable random llama, and broken files."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import (
    GGUF_DEFAULT_ALIGNMENT,
    MODEL_TENSOR,
    TENSOR_NAMES,
    GGUFValueType,
    GGUFWriter,
    Keys,
    LlamaFileType,
    TokenType,
)
from gguf.vocab import bytes_to_unicode

BOS, EOS, IM_START, IM_END = "<s>", "</s>", "<|im_start|>", "<|im_end|>"
SPECIAL_TOKENS = (BOS, EOS, IM_START, IM_END)
MERGES = ("Ġ t", "h e", "i n", "Ġt he")
"""Byte-level BPE merges; each result ("Ġt", "he", "in", "Ġthe") is in the vocabulary."""
MIN_VOCAB = 256 + len(MERGES) + len(SPECIAL_TOKENS)

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class _Shape:
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    n_ff: int
    n_vocab: int

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head


def write_tiny_gguf(
    path: Path,
    *,
    arch: str = "llama",
    n_layer: int = 2,
    n_embd: int = 64,
    n_head: int = 4,
    n_head_kv: int = 2,
    n_ff: int = 128,
    n_vocab: int = MIN_VOCAB,
    context_length: int = 256,
    dtype: str = "f32",
    chat_template: str | None = None,
    name: str = "Tiny Llama",
    split_count: int = 1,
    seed: int = 0,
    omit_tensors: tuple[str, ...] = (),
    edit: Callable[[GGUFWriter], None] | None = None,
) -> Path:
    """Write a complete llama-architecture model with random weights and a byte-level BPE.

    Args:
        path: Where to write the file.
        arch: general.architecture (and the prefix of the model keys); the tensors are
            llama's whatever this says, so another name makes an "unknown architecture" file.
        n_layer: Blocks.
        n_embd: Embedding width; a multiple of 32 keeps every tensor quantizable.
        n_head: Attention heads; must divide n_embd.
        n_head_kv: Key/value heads (grouped-query attention); must divide n_head.
        n_ff: Feed-forward width.
        n_vocab: Tokens: 256 byte tokens, the merged tokens, four control tokens, then
            unused filler tokens up to this count (at least `MIN_VOCAB`).
        context_length: Training context length.
        dtype: "f32" or "f16" for the matrices; norms are always F32, as in real models.
        chat_template: tokenizer.chat_template, omitted if None.
        name: general.name.
        split_count: Above 1, the split.* keys of a split model's first shard.
        seed: Seed of the random weights.
        omit_tensors: Tensor names to leave out (a well-formed file llama.cpp rejects).
        edit: Called with the writer after every key and tensor is added, before anything
            is written: it may change `writer.kv_data[0]` (key -> `GGUFValue`) and
            `writer.tensors[0]` (name -> `TensorInfo`) to make a broken file.

    Returns:
        `path`.
    """
    if dtype not in ("f32", "f16"):
        raise ValueError(f"dtype must be 'f32' or 'f16', not {dtype!r}")
    shape = _Shape(n_layer, n_embd, n_head, n_head_kv, n_ff, n_vocab)
    writer = _writer_with_metadata(path, arch, shape, context_length, name, chat_template)
    writer.add_file_type(LlamaFileType.ALL_F32 if dtype == "f32" else LlamaFileType.MOSTLY_F16)
    if split_count > 1:
        writer.add_uint16(Keys.Split.LLM_KV_SPLIT_NO, 0)
        writer.add_uint16(Keys.Split.LLM_KV_SPLIT_COUNT, split_count)
        writer.add_int32(Keys.Split.LLM_KV_SPLIT_TENSORS_COUNT, len(_tensor_shapes(shape)))
    rng = np.random.RandomState(seed)
    matrix_type = np.float32 if dtype == "f32" else np.float16
    for tensor_name, tensor_shape in _tensor_shapes(shape).items():
        if tensor_name in omit_tensors:
            continue
        if len(tensor_shape) == 1:
            data = np.ones(tensor_shape, dtype=np.float32)
        else:
            data = (rng.standard_normal(tensor_shape) * 0.02).astype(matrix_type)
        writer.add_tensor(tensor_name, data)
    if edit is not None:
        edit(writer)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
    finally:
        writer.close()
    return path


def write_sparse_huge_gguf(path: Path, tensor_bytes: int = 64 * 2**30) -> Path:
    """Write a 2-layer llama whose F16 feed-forward tensors total at least `tensor_bytes`.

    Only the header is written; the file is then extended to its full size with
    `truncate`, so its tensor data lies inside the file (all zeros) yet takes almost no disk
    on filesystems with sparse files. Not meant to be loaded, only measured.
    """
    n_layer, n_embd = 2, 4096
    bytes_per_ff_column = n_layer * 3 * n_embd * 2  # gate, up and down of every layer, F16
    n_ff = math.ceil(tensor_bytes / bytes_per_ff_column / 32) * 32
    shape = _Shape(n_layer, n_embd, 32, 8, n_ff, MIN_VOCAB)
    writer = _writer_with_metadata(path, "llama", shape, 4096, "Sparse Giant", None)
    writer.add_file_type(LlamaFileType.MOSTLY_F16)
    data_size = 0
    for tensor_name, tensor_shape in _tensor_shapes(shape).items():
        item_dtype = np.dtype(np.float32 if len(tensor_shape) == 1 else np.float16)
        nbytes = math.prod(tensor_shape) * item_dtype.itemsize
        writer.add_tensor_info(tensor_name, tensor_shape, item_dtype, nbytes)
        data_size += GGUFWriter.ggml_pad(nbytes, GGUF_DEFAULT_ALIGNMENT)
    try:
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
    finally:
        writer.close()
    header_size = GGUFWriter.ggml_pad(path.stat().st_size, GGUF_DEFAULT_ALIGNMENT)
    with path.open("r+b") as file:
        file.truncate(header_size + data_size)
    return path


def write_truncated_copy(src: Path, dst: Path, keep_fraction: float) -> Path:
    """Copy the first `keep_fraction` of `src` to `dst`, like an interrupted download."""
    keep = int(src.stat().st_size * keep_fraction)
    with src.open("rb") as source:
        dst.write_bytes(source.read(keep))
    return dst


def vocabulary(n_vocab: int = MIN_VOCAB) -> tuple[list[str], list[int]]:
    """Token texts and types of the byte-level BPE vocabulary `write_tiny_gguf` writes."""
    if n_vocab < MIN_VOCAB:
        raise ValueError(f"n_vocab must be at least {MIN_VOCAB}, not {n_vocab}")
    tokens = list(bytes_to_unicode().values())
    tokens += [merge.replace(" ", "") for merge in MERGES]
    types = [int(TokenType.NORMAL)] * len(tokens)
    tokens += SPECIAL_TOKENS
    types += [int(TokenType.CONTROL)] * len(SPECIAL_TOKENS)
    filler = n_vocab - len(tokens)
    tokens += [f"<|unused_{i}|>" for i in range(filler)]
    types += [int(TokenType.UNUSED)] * filler
    return tokens, types


def _writer_with_metadata(
    path: Path,
    arch: str,
    shape: _Shape,
    context_length: int,
    name: str,
    chat_template: str | None,
) -> GGUFWriter:
    if shape.n_embd % shape.n_head or shape.n_head % shape.n_head_kv:
        raise ValueError("n_head must divide n_embd and n_head_kv must divide n_head")
    tokens, types = vocabulary(shape.n_vocab)
    writer = GGUFWriter(path, arch)
    writer.add_name(name)
    writer.add_context_length(context_length)
    writer.add_embedding_length(shape.n_embd)
    writer.add_block_count(shape.n_layer)
    writer.add_feed_forward_length(shape.n_ff)
    writer.add_head_count(shape.n_head)
    writer.add_head_count_kv(shape.n_head_kv)
    writer.add_rope_dimension_count(shape.head_dim)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(shape.n_vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_key_value(
        Keys.Tokenizer.MERGES, list(MERGES), GGUFValueType.ARRAY, sub_type=GGUFValueType.STRING
    )
    writer.add_bos_token_id(tokens.index(BOS))
    writer.add_eos_token_id(tokens.index(EOS))
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    return writer


def _tensor_shapes(shape: _Shape) -> dict[str, tuple[int, ...]]:
    """llama tensor names to numpy shapes (rows, columns): ggml's ne reversed."""
    q_width = shape.n_head * shape.head_dim
    kv_width = shape.n_head_kv * shape.head_dim
    shapes: dict[str, tuple[int, ...]] = {
        _name(MODEL_TENSOR.TOKEN_EMBD): (shape.n_vocab, shape.n_embd),
        _name(MODEL_TENSOR.OUTPUT_NORM): (shape.n_embd,),
        _name(MODEL_TENSOR.OUTPUT): (shape.n_vocab, shape.n_embd),
    }
    for block in range(shape.n_layer):
        per_block: dict[MODEL_TENSOR, tuple[int, ...]] = {
            MODEL_TENSOR.ATTN_NORM: (shape.n_embd,),
            MODEL_TENSOR.ATTN_Q: (q_width, shape.n_embd),
            MODEL_TENSOR.ATTN_K: (kv_width, shape.n_embd),
            MODEL_TENSOR.ATTN_V: (kv_width, shape.n_embd),
            MODEL_TENSOR.ATTN_OUT: (shape.n_embd, q_width),
            MODEL_TENSOR.FFN_NORM: (shape.n_embd,),
            MODEL_TENSOR.FFN_GATE: (shape.n_ff, shape.n_embd),
            MODEL_TENSOR.FFN_UP: (shape.n_ff, shape.n_embd),
            MODEL_TENSOR.FFN_DOWN: (shape.n_embd, shape.n_ff),
        }
        shapes.update({_name(kind, block): dims for kind, dims in per_block.items()})
    return shapes


def _name(kind: MODEL_TENSOR, block: int | None = None) -> str:
    base = TENSOR_NAMES[kind]
    return (base.format(bid=block) if block is not None else base) + ".weight"
