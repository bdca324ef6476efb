"""A fuzz corpus of broken GGUF files, made from a few tiny valid ones in well under a second.

Two kinds of mutants:

- header mutants (`level == "header"`): bytes of a valid file changed, cut or re-assembled:
  magic, version, counts, key and string lengths, value types, array item types and lengths,
  truncations, duplicated and missing keys, tensor infos (names, dims, types, offsets,
  alignment) and tensor counts;
- value mutants (`level == "value"`): files written whole by `write_tiny_gguf` with one value
  that makes no sense (zero layers or heads, a rope base of 0 or NaN, token ids outside the
  vocabulary, token types out of range, vocabularies of the wrong length, NaN weights,
  integer tensors where floats belong...).

`corpus()` lists them by name; `Mutant.write(folder)` writes one. `CRASHERS` and
`write_crashing_gguf` make files that crash llama.cpp in each way it dies.
"""

from __future__ import annotations

import functools
import struct
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFValueType, GGUFWriter
from gguf.gguf_writer import GGUFValue, TensorInfo

from tests.gguf_factory import CHATML_TEMPLATE, MIN_VOCAB, write_tiny_gguf

ARCH = "llama"
_SCALAR_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_STRING, _ARRAY = 8, 9
U32_MAX, U64_MAX = 2**32 - 1, 2**64 - 1


@dataclass(frozen=True)
class Mutant:
    """One broken file: a unique name (a test id) and how it is made."""

    name: str
    level: str  # "header" or "value"
    make: Callable[[Path], None]

    def write(self, folder: Path) -> Path:
        """Write the file into `folder`; return its path."""
        path = folder / (self.name.replace("/", "__").replace("=", "-") + ".gguf")
        self.make(path)
        return path


# --- the valid bases -----------------------------------------------------------------------


BASES: dict[str, dict[str, object]] = {
    "f32": {},
    "f16": {"dtype": "f16", "chat_template": CHATML_TEMPLATE, "n_layer": 1},
}


@functools.cache
def base_bytes(base: str = "f32") -> bytes:
    """The bytes of a valid tiny model (made once per process)."""
    with tempfile.TemporaryDirectory(prefix="hearth-fuzz-") as folder:
        path = write_tiny_gguf(Path(folder) / f"{base}.gguf", **BASES[base])  # type: ignore[arg-type]
        return path.read_bytes()


def write_base(base: str, path: Path) -> Path:
    """Write a valid base model at `path`."""
    path.write_bytes(base_bytes(base))
    return path


# --- the layout of a valid file --------------------------------------------------------------


@dataclass(frozen=True)
class KV:
    """One metadata entry: where its parts start in the file."""

    key: str
    start: int  # the key's length
    type_at: int
    value_at: int
    end: int
    vtype: int
    item_type_at: int = -1  # arrays only
    count: int = 0  # arrays: items; strings: bytes


@dataclass(frozen=True)
class TI:
    """One tensor info."""

    name: str
    start: int
    n_dims_at: int
    dims: tuple[int, ...]
    type_at: int
    offset_at: int
    end: int
    offset: int


@dataclass(frozen=True)
class Layout:
    kvs: tuple[KV, ...]
    tis: tuple[TI, ...]
    header_end: int
    data_at: int

    def kv(self, key: str) -> KV:
        return next(kv for kv in self.kvs if kv.key == key)

    def ti(self, name: str) -> TI:
        return next(ti for ti in self.tis if ti.name == name)


@functools.cache
def layout(base: str = "f32") -> Layout:
    """Parse a valid base file (this parser trusts its input: it is ours)."""
    raw = base_bytes(base)
    n_tensors, n_kv = struct.unpack_from("<QQ", raw, 8)
    at = 24
    kvs = []
    for _ in range(n_kv):
        start = at
        (n,) = struct.unpack_from("<Q", raw, at)
        key = raw[at + 8 : at + 8 + n].decode()
        type_at = at + 8 + n
        (vtype,) = struct.unpack_from("<I", raw, type_at)
        value_at = type_at + 4
        item_type_at, count = -1, 0
        if vtype == _STRING:
            (count,) = struct.unpack_from("<Q", raw, value_at)
            end = value_at + 8 + count
        elif vtype == _ARRAY:
            item_type_at = value_at
            (item_type,) = struct.unpack_from("<I", raw, value_at)
            (count,) = struct.unpack_from("<Q", raw, value_at + 4)
            end = value_at + 12
            for _ in range(count):
                if item_type == _STRING:
                    (length,) = struct.unpack_from("<Q", raw, end)
                    end += 8 + length
                else:
                    end += _SCALAR_SIZES[item_type]
        else:
            end = value_at + _SCALAR_SIZES[vtype]
        kvs.append(KV(key, start, type_at, value_at, end, vtype, item_type_at, count))
        at = end
    tis = []
    for _ in range(n_tensors):
        start = at
        (n,) = struct.unpack_from("<Q", raw, at)
        name = raw[at + 8 : at + 8 + n].decode()
        n_dims_at = at + 8 + n
        (n_dims,) = struct.unpack_from("<I", raw, n_dims_at)
        dims = struct.unpack_from(f"<{n_dims}Q", raw, n_dims_at + 4)
        type_at = n_dims_at + 4 + 8 * n_dims
        (offset,) = struct.unpack_from("<Q", raw, type_at + 4)
        tis.append(TI(name, start, n_dims_at, dims, type_at, type_at + 4, type_at + 12, offset))
        at = type_at + 12
    data_at = -(-at // 32) * 32
    return Layout(tuple(kvs), tuple(tis), at, data_at)


# --- byte helpers --------------------------------------------------------------------------


def u32(value: int) -> bytes:
    return struct.pack("<I", value)


def u64(value: int) -> bytes:
    return struct.pack("<Q", value)


def patched(raw: bytes, at: int, data: bytes) -> bytes:
    return raw[:at] + data + raw[at + len(data) :]


def kv_bytes(key: str, vtype: int, payload: bytes) -> bytes:
    """A raw metadata entry."""
    encoded = key.encode()
    return u64(len(encoded)) + encoded + u32(vtype) + payload


def assembled(
    base: str,
    kvs: Sequence[bytes],
    tis: Sequence[bytes],
    *,
    n_kv: int | None = None,
    n_tensors: int | None = None,
    alignment: int = 32,
) -> bytes:
    """A file from raw metadata entries and tensor infos, followed by the base's tensor data
    (the header padded to `alignment`)."""
    raw = base_bytes(base)
    head = raw[:8] + u64(len(tis) if n_tensors is None else n_tensors)
    head += u64(len(kvs) if n_kv is None else n_kv) + b"".join(kvs) + b"".join(tis)
    head += b"\0" * (-len(head) % alignment)
    return head + raw[layout(base).data_at :]


def raw_kvs(base: str = "f32") -> list[bytes]:
    raw = base_bytes(base)
    return [raw[kv.start : kv.end] for kv in layout(base).kvs]


def raw_tis(base: str = "f32") -> list[bytes]:
    raw = base_bytes(base)
    return [raw[ti.start : ti.end] for ti in layout(base).tis]


def _bytes_mutant(name: str, make: Callable[[], bytes]) -> Mutant:
    def write(path: Path) -> None:
        path.write_bytes(make())

    return Mutant(f"header/{name}", "header", write)


# --- header mutants ------------------------------------------------------------------------


def header_mutants() -> list[Mutant]:
    """Byte-level damage to a valid file."""
    raw, lay = base_bytes("f32"), layout("f32")
    out: list[Mutant] = []

    def add(name: str, data: bytes | Callable[[], bytes]) -> None:
        out.append(_bytes_mutant(name, data if callable(data) else (lambda d=data: d)))

    for magic in (b"GGUG", b"\0\0\0\0", b"FUGG", b"GGML", b"gguf"):
        add(f"magic={magic.hex()}", patched(raw, 0, magic))
    for version in (0, 1, 2, 4, 0x03000000, U32_MAX):
        add(f"version={version}", patched(raw, 4, u32(version)))
    n_t, n_kv = len(lay.tis), len(lay.kvs)
    for count in (0, n_t - 1, n_t + 1, 2**32, U64_MAX):
        add(f"n_tensors={count}", patched(raw, 8, u64(count)))
    for count in (0, n_kv - 1, n_kv + 1, 2**32, U64_MAX):
        add(f"n_kv={count}", patched(raw, 16, u64(count)))

    keys = [kv.key for kv in lay.kvs]
    for key in (keys[0], f"{ARCH}.block_count", keys[-1]):
        kv = lay.kv(key)
        for length in (0, kv.type_at - kv.start - 9, kv.type_at - kv.start - 7, 2**63, U64_MAX):
            add(f"key_length/{key}={length}", patched(raw, kv.start, u64(length)))

    typed_keys = (
        "general.architecture",
        "general.name",
        f"{ARCH}.block_count",
        f"{ARCH}.context_length",
        f"{ARCH}.attention.head_count",
        f"{ARCH}.rope.freq_base",
        "tokenizer.ggml.model",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.bos_token_id",
        "tokenizer.ggml.add_bos_token",
    )
    for key in typed_keys:
        kv = lay.kv(key)
        for vtype in (0, 4, 5, 6, 7, 8, 9, 10, 13, U32_MAX):
            if vtype != kv.vtype:
                add(f"value_type/{key}={vtype}", patched(raw, kv.type_at, u32(vtype)))

    for key in ("general.architecture", "general.name", "tokenizer.ggml.model"):
        kv = lay.kv(key)
        for length in (0, kv.count - 1, kv.count + 1, 2**31, U64_MAX):
            add(f"string_length/{key}={length}", patched(raw, kv.value_at, u64(length)))

    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"):
        kv = lay.kv(key)
        for item_type in (5, 8, 9, 13):
            if item_type != struct.unpack_from("<I", raw, kv.item_type_at)[0]:
                add(f"array_type/{key}={item_type}", patched(raw, kv.item_type_at, u32(item_type)))
        for count in (0, kv.count - 1, kv.count + 1, U32_MAX, U64_MAX):
            add(f"array_length/{key}={count}", patched(raw, kv.item_type_at + 4, u64(count)))
    first_token = lay.kv("tokenizer.ggml.tokens").item_type_at + 12
    for length in (2**40, U64_MAX):
        add(f"token_text_length={length}", patched(raw, first_token, u64(length)))

    out += _structural_mutants()
    out += _truncations()
    out += _tensor_info_mutants()
    return out


def _structural_mutants() -> list[Mutant]:
    """Keys duplicated, dropped or added; tensor infos dropped or duplicated."""
    lay = layout("f32")
    kvs, tis = raw_kvs(), raw_tis()
    keys = [kv.key for kv in lay.kvs]
    out: list[Mutant] = []

    def add(name: str, make: Callable[[], bytes]) -> None:
        out.append(_bytes_mutant(name, make))

    for key in ("general.architecture", f"{ARCH}.block_count", "tokenizer.ggml.tokens"):
        i = keys.index(key)
        add(f"duplicate_key/{key}", lambda i=i: assembled("f32", [*kvs, kvs[i]], tis))
    block_count_3 = kv_bytes(f"{ARCH}.block_count", 4, u32(3))
    add("duplicate_key/block_count=3", lambda: assembled("f32", [*kvs, block_count_3], tis))
    for key in (
        "general.architecture",
        f"{ARCH}.block_count",
        f"{ARCH}.embedding_length",
        f"{ARCH}.attention.head_count",
        f"{ARCH}.context_length",
        f"{ARCH}.feed_forward_length",
        "tokenizer.ggml.model",
        "tokenizer.ggml.tokens",
        "tokenizer.ggml.token_type",
        "tokenizer.ggml.merges",
    ):
        i = keys.index(key)
        add(
            f"missing_key/{key}",
            lambda i=i: assembled("f32", kvs[:i] + kvs[i + 1 :], tis),
        )
    for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type", "tokenizer.ggml.merges"):
        i = keys.index(key)
        item_type = base_bytes()[lay.kvs[i].item_type_at : lay.kvs[i].item_type_at + 4]
        empty = kv_bytes(key, _ARRAY, item_type + u64(0))
        add(
            f"empty_array/{key}",
            lambda i=i, e=empty: assembled("f32", [*kvs[:i], e, *kvs[i + 1 :]], tis),
        )
    for value, vtype, payload in (
        ("0", 4, u32(0)),
        ("3", 4, u32(3)),
        ("64", 4, u32(64)),
        ("2^31", 4, u32(2**31)),
        ("float", 6, struct.pack("<f", 32.0)),
    ):
        entry = kv_bytes("general.alignment", vtype, payload)
        align = 64 if value == "64" else 32
        add(
            f"alignment={value}",
            lambda e=entry, a=align: assembled("f32", [*kvs, e], tis, alignment=a),
        )
    for i in (0, 1, len(tis) - 1):
        name = lay.tis[i].name
        add(
            f"missing_tensor_info/{name}",
            lambda i=i: assembled("f32", kvs, tis[:i] + tis[i + 1 :]),
        )
    add("duplicate_tensor_info", lambda: assembled("f32", kvs, [*tis, tis[-1]]))
    return out


def _truncations() -> list[Mutant]:
    """The base cut at 40 places in its header, a few in its data, and one byte short."""
    raw, lay = base_bytes("f32"), layout("f32")
    cuts = sorted(
        {int(lay.header_end * i / 40) for i in range(40)}
        | {lay.header_end, lay.data_at, lay.data_at + 100, len(raw) // 2, len(raw) - 1}
    )
    return [_bytes_mutant(f"truncated_at={cut}", lambda c=cut: raw[:c]) for cut in cuts]


def _tensor_info_mutants() -> list[Mutant]:
    """Names, dimensions, types and offsets of tensor infos changed in place."""
    raw, lay = base_bytes("f32"), layout("f32")
    out: list[Mutant] = []

    def add(name: str, data: bytes) -> None:
        out.append(_bytes_mutant(name, lambda d=data: d))

    matrix, embd, norm, last = (
        lay.ti("blk.0.attn_q.weight"),
        lay.ti("token_embd.weight"),
        lay.ti("blk.0.attn_norm.weight"),
        lay.tis[-1],
    )
    for ti in (matrix, embd):
        for kind in ("I32", "I8", "I16", "I64", "F64", "F16", "BF16", "Q4_0", "Q8_0"):
            type_id = int(GGMLQuantizationType[kind])
            add(f"tensor_type/{ti.name}={kind}", patched(raw, ti.type_at, u32(type_id)))
        for type_id in (99, U32_MAX):
            add(f"tensor_type/{ti.name}={type_id}", patched(raw, ti.type_at, u32(type_id)))
    for kind in ("Q8_0", "I32", "F16"):
        type_id = int(GGMLQuantizationType[kind])
        add(f"tensor_type/{norm.name}={kind}", patched(raw, norm.type_at, u32(type_id)))

    for ti in (matrix, embd):
        add(f"n_dims/{ti.name}=0", patched(raw, ti.n_dims_at, u32(0)))
        add(f"n_dims/{ti.name}=1", patched(raw, ti.n_dims_at, u32(1)))
        add(f"n_dims/{ti.name}=5", patched(raw, ti.n_dims_at, u32(5)))
        add(f"n_dims/{ti.name}=max", patched(raw, ti.n_dims_at, u32(U32_MAX)))
        dims_at = ti.n_dims_at + 4
        d0, d1 = ti.dims
        add(f"dims/{ti.name}=0x{d1}", patched(raw, dims_at, u64(0)))
        add(f"dims/{ti.name}={d0}x0", patched(raw, dims_at + 8, u64(0)))
        add(f"dims/{ti.name}={d0 + 1}x{d1}", patched(raw, dims_at, u64(d0 + 1)))
        add(f"dims/{ti.name}={d0 // 2}x{d1}", patched(raw, dims_at, u64(d0 // 2)))
        add(f"dims/{ti.name}=swapped", patched(raw, dims_at, u64(d1) + u64(d0)))
        add(f"dims/{ti.name}=2^40", patched(raw, dims_at, u64(2**40)))

    for ti in (lay.tis[0], matrix, last):
        add(f"offset/{ti.name}=+1", patched(raw, ti.offset_at, u64(ti.offset + 1)))
        add(f"offset/{ti.name}=+32", patched(raw, ti.offset_at, u64(ti.offset + 32)))
        add(f"offset/{ti.name}=2^63", patched(raw, ti.offset_at, u64(2**63)))
    all_zero = raw
    for ti in lay.tis:
        all_zero = patched(all_zero, ti.offset_at, u64(0))
    add("offset/all=0", all_zero)

    # Names: empty, a twin of another tensor's, undecodable, unknown to llama.cpp.
    add(f"tensor_name_length/{matrix.name}=0", patched(raw, matrix.start, u64(0)))
    twin = lay.ti("blk.0.attn_k.weight")
    add("tensor_name/twin", patched(raw, twin.start + 8, matrix.name.encode()))
    add("tensor_name/undecodable", patched(raw, matrix.start + 8, b"\xff\xfe\xfd"))
    add("tensor_name/unknown", patched(raw, matrix.start + 8, b"blk.7"))
    return out


# --- value mutants -------------------------------------------------------------------------


Edit = Callable[[GGUFWriter], None]


def _value_mutant(name: str, edit: Edit, base: str = "f32") -> Mutant:
    def write(path: Path) -> None:
        write_tiny_gguf(path, edit=edit, **BASES[base])  # type: ignore[arg-type]

    return Mutant(f"value/{name}", "value", write)


def set_kv(key: str, value: object, vtype: GGUFValueType, sub: GGUFValueType | None = None) -> Edit:
    """An edit that sets (or adds) one metadata value."""

    def edit(writer: GGUFWriter) -> None:
        writer.kv_data[0][key] = GGUFValue(value, vtype, sub)

    return edit


def _arch(key: str, value: object, vtype: GGUFValueType = GGUFValueType.UINT32) -> Edit:
    return set_kv(f"{ARCH}.{key}", value, vtype)


def _tensor_data(name: str, change: Callable[[np.ndarray], np.ndarray]) -> Edit:
    """An edit that replaces one tensor's data (same shape, maybe another dtype)."""

    def edit(writer: GGUFWriter) -> None:
        info = writer.tensors[0][name]
        assert info.tensor is not None
        data = change(info.tensor.copy())
        kind = {
            np.dtype(np.float32): GGMLQuantizationType.F32,
            np.dtype(np.float16): GGMLQuantizationType.F16,
            np.dtype(np.int32): GGMLQuantizationType.I32,
            np.dtype(np.int8): GGMLQuantizationType.I8,
        }[data.dtype]
        writer.tensors[0][name] = TensorInfo(info.shape, kind, data.nbytes, data)

    return edit


def _array_kv(key: str, change: Callable[[list[object]], list[object]]) -> Edit:
    def edit(writer: GGUFWriter) -> None:
        old = writer.kv_data[0][key]
        writer.kv_data[0][key] = GGUFValue(change(list(old.value)), old.type, old.sub_type)

    return edit


def value_mutants() -> list[Mutant]:
    """Whole files with one nonsense value."""
    u32t, i32t, f32t = GGUFValueType.UINT32, GGUFValueType.INT32, GGUFValueType.FLOAT32
    arr, strt = GGUFValueType.ARRAY, GGUFValueType.STRING
    out: list[Mutant] = []

    def add(name: str, edit: Edit, base: str = "f32") -> None:
        out.append(_value_mutant(name, edit, base))

    for n in (0, 1, 3, 2**31, U32_MAX):
        add(f"block_count={n}", _arch("block_count", n))
    for n in (0, 3, U32_MAX):
        add(f"head_count={n}", _arch("attention.head_count", n))
    for n in (0, 3, 64):
        add(f"head_count_kv={n}", _arch("attention.head_count_kv", n))
    for label, values, key in (
        ("head_count=[4,0]", [4, 0], "attention.head_count"),
        ("head_count=[0,0]", [0, 0], "attention.head_count"),
        ("head_count=[4]", [4], "attention.head_count"),
        ("head_count_kv=[2,0]", [2, 0], "attention.head_count_kv"),
        ("head_count_kv=[0,2]", [0, 2], "attention.head_count_kv"),
    ):
        add(f"per_layer/{label}", set_kv(f"{ARCH}.{key}", values, arr, u32t))
    for n in (0, 1, U32_MAX):
        add(f"context_length={n}", _arch("context_length", n))
    add("embedding_length=0", _arch("embedding_length", 0))
    add("embedding_length=63", _arch("embedding_length", 63))
    add("feed_forward_length=0", _arch("feed_forward_length", 0))
    for value in (0.0, -1.0, -10000.0, float("nan"), float("inf")):
        add(f"rope.freq_base={value}", _arch("rope.freq_base", value, f32t))
    add("rope.dimension_count=0", _arch("rope.dimension_count", 0))
    add("rope.dimension_count=4096", _arch("rope.dimension_count", 4096))
    for value in (0.0, float("nan"), -1.0):
        add(
            f"rms_eps={value}",
            _arch("attention.layer_norm_rms_epsilon", value, f32t),
        )
    for key in ("bos", "eos"):
        for n in (MIN_VOCAB, 2**31 - 1, U32_MAX):
            add(
                f"{key}_token_id={n}",
                set_kv(f"tokenizer.ggml.{key}_token_id", n, u32t),
            )
    add("tokens=short", _array_kv("tokenizer.ggml.tokens", lambda t: t[:-10]))
    add("tokens=long", _array_kv("tokenizer.ggml.tokens", lambda t: [*t, "x", "y", "z"]))
    add("token_type=short", _array_kv("tokenizer.ggml.token_type", lambda t: t[:-10]))
    add("token_type=long", _array_kv("tokenizer.ggml.token_type", lambda t: [*t, 1, 1]))
    add("token_type/one=99", _array_kv("tokenizer.ggml.token_type", lambda t: [*t[:-1], 99]))
    add("token_type/first=-1", set_kv_items("tokenizer.ggml.token_type", 0, -1, i32t))
    add("token_type/all=0", _array_kv("tokenizer.ggml.token_type", lambda t: [0] * len(t)))
    add("token_type/all=3", _array_kv("tokenizer.ggml.token_type", lambda t: [3] * len(t)))
    for model in ("nonsense", "", "llama"):
        add(f"tokenizer_model={model or 'empty'}", set_kv("tokenizer.ggml.model", model, strt))
    add("merges=unknown", _array_kv("tokenizer.ggml.merges", lambda m: [*m, "qq zz"]))
    add("merges=no_space", _array_kv("tokenizer.ggml.merges", lambda m: [*m, "nospace"]))
    add("block_count_as=float32", _arch("block_count", 2.0, f32t))
    add("block_count_as=string", _arch("block_count", "2", strt))
    add("block_count_as=int8", _arch("block_count", 2, GGUFValueType.INT8))
    add("block_count_as=uint64", _arch("block_count", 2, GGUFValueType.UINT64))
    add("context_length_as=bool", _arch("context_length", True, GGUFValueType.BOOL))
    add("freq_base_as=uint32", _arch("rope.freq_base", 10000, u32t))

    nan, inf = float("nan"), float("inf")
    add("weights/token_embd=nan", _tensor_data("token_embd.weight", lambda a: a * nan))
    add("weights/output=nan", _tensor_data("output.weight", lambda a: a * nan))
    add("weights/output_one=inf", _tensor_data("output.weight", _set_first(inf)))
    add("weights/attn_norm=nan", _tensor_data("blk.0.attn_norm.weight", lambda a: a * nan))
    add("weights/output_norm=0", _tensor_data("output_norm.weight", lambda a: a * 0))
    add(
        "weights/f16_token_embd=inf",
        _tensor_data("token_embd.weight", lambda a: a + np.float16(inf)),
        "f16",
    )
    add("tensor_as_i32/token_embd", _tensor_data("token_embd.weight", _as_int32))
    add("tensor_as_i32/attn_q", _tensor_data("blk.0.attn_q.weight", _as_int32))
    add("tensor_as_i32/output_norm", _tensor_data("output_norm.weight", _as_int32))
    add("tensor_as_i8/attn_norm", _tensor_data("blk.0.attn_norm.weight", _as_int8))
    add("tensor_as_f16/attn_norm", _tensor_data("blk.0.attn_norm.weight", _as_f16))
    add("missing_tensor/output_norm", _drop_tensor("output_norm.weight"))
    add("missing_tensor/ffn_down", _drop_tensor("blk.1.ffn_down.weight"))
    add("missing_tensor/output", _drop_tensor("output.weight"))
    add("tensor_shape/attn_k=transposed", _transpose("blk.0.attn_k.weight"))
    return out


def set_kv_items(key: str, index: int, value: int, item_type: GGUFValueType) -> Edit:
    """An edit that sets one item of an integer array (and its item type)."""

    def edit(writer: GGUFWriter) -> None:
        old = writer.kv_data[0][key]
        items = list(old.value)
        items[index] = value
        writer.kv_data[0][key] = GGUFValue(items, old.type, item_type)

    return edit


def _set_first(value: float) -> Callable[[np.ndarray], np.ndarray]:
    def change(data: np.ndarray) -> np.ndarray:
        data.flat[0] = value
        return data

    return change


def _as_int32(data: np.ndarray) -> np.ndarray:
    return data.astype(np.float32).view(np.int32)


def _as_int8(data: np.ndarray) -> np.ndarray:
    return np.clip(data * 100, -127, 127).astype(np.int8)


def _as_f16(data: np.ndarray) -> np.ndarray:
    return data.astype(np.float16)


def _drop_tensor(name: str) -> Edit:
    def edit(writer: GGUFWriter) -> None:
        del writer.tensors[0][name]

    return edit


def _transpose(name: str) -> Edit:
    def edit(writer: GGUFWriter) -> None:
        info = writer.tensors[0][name]
        assert info.tensor is not None
        data = np.ascontiguousarray(info.tensor.T)
        writer.tensors[0][name] = TensorInfo(data.shape, info.dtype, info.nbytes, data)

    return edit


# --- the corpus ----------------------------------------------------------------------------


@functools.cache
def corpus() -> tuple[Mutant, ...]:
    """Every mutant, header ones first; names are unique."""
    mutants = (*header_mutants(), *value_mutants())
    names = [m.name for m in mutants]
    duplicates = {n for n in names if names.count(n) > 1}
    assert not duplicates, f"duplicate mutant names: {sorted(duplicates)}"
    return mutants


# --- files that crash llama.cpp, one per way it dies -------------------------------------

CRASHERS: dict[str, Edit] = {
    # token_embd as I32: ggml's scheduler finds no backend for the lookup: GGML_ASSERT.
    "abort": _tensor_data("token_embd.weight", _as_int32),
    # attn_q as I32: a matrix multiply reads integers as floats past its buffers: SIGSEGV.
    "segfault": _tensor_data("blk.0.attn_q.weight", _as_int32),
    # a SentencePiece tokenizer without byte tokens: std::out_of_range escapes llama.cpp
    # while tokenizing, and the C++ runtime aborts.
    "exception": set_kv("tokenizer.ggml.model", "llama", GGUFValueType.STRING),
}
"""Files whose header Hearth accepts and that still end the process that loads them."""


def write_crashing_gguf(path: Path, kind: str = "abort") -> Path:
    """A tiny model that makes llama.cpp crash in the way `kind` names (see `CRASHERS`)."""
    return write_tiny_gguf(path, edit=CRASHERS[kind])
