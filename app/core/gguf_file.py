"""Read and validate a GGUF file's header before llama.cpp ever opens it.

The header is parsed here with a small streaming reader built on the `gguf` package's
constants (value types, tensor types and sizes, file types, architecture names) rather than
`gguf.GGUFReader`. `GGUFReader` maps the whole file and builds views of every tensor, so a
truncated download makes it fail with a bare `ValueError` from numpy before anyone can say how
much is missing, and its memory map stays alive as long as any value read from it. Reading the
header from a plain file handle needs none of the tensor data, works the same on a complete,
truncated or sparse file, and closes the handle before returning.
"""

from __future__ import annotations

import stat
import struct
from collections import Counter
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Union

from app.core.errors import ModelFileError, UnsupportedModelError
from app.core.gguf_checks import check_values
from app.core.units import format_bytes

SUPPORTED_VERSIONS = (2, 3)
_MAGIC = b"GGUF"
_FIXED_HEADER_SIZE = 24  # magic, version, tensor count, metadata count
_MAX_DIMS = 4  # GGML_MAX_DIMS
_MAX_COUNT = 2**32  # more tensors, keys or array items than this means a damaged header
_MAX_STRING = 2**31  # a longer text value means a damaged header
_MAX_TENSOR_BYTES = 2**48  # 256 TiB: a larger tensor means a damaged header
_VISION_PROJECTOR_ARCH = "clip"
_U64 = struct.Struct("<Q")

if TYPE_CHECKING:  # numpy and gguf load on the first read: the GUI starts without them
    import numpy as np
    import numpy.typing as npt
    from gguf import GGMLQuantizationType

# GGUF metadata value type ids (the spec's gguf_metadata_value_type; `gguf.GGUFValueType`)
# and the struct format of the scalar ones.
_STRING = 8
_ARRAY = 9
_LAST_VALUE_TYPE = 12
_SCALAR_FORMATS: dict[int, str] = {
    0: "B",  # UINT8
    1: "b",  # INT8
    2: "H",  # UINT16
    3: "h",  # INT16
    4: "I",  # UINT32
    5: "i",  # INT32
    6: "f",  # FLOAT32
    7: "?",  # BOOL
    10: "Q",  # UINT64
    11: "q",  # INT64
    12: "d",  # FLOAT64
}

MetadataValue = Union[int, float, str, "list[MetadataValue]", "npt.NDArray[np.generic]"]
"""One metadata value; numeric arrays are numpy arrays, string arrays lists of str."""


@dataclass(frozen=True)
class TensorSize:
    """One tensor of a GGUF file: its name ("blk.3.attn_q.weight") and data size in bytes.

    `ggml_type` is the tensor's type name ("F16", "Q4_K") and `shape` its dimensions in
    ggml order (`shape[0]` is the row length); both are empty when not known.
    """

    name: str
    n_bytes: int
    ggml_type: str = ""
    shape: tuple[int, ...] = ()


@dataclass(frozen=True)
class GGUFInfo:
    """What a GGUF header says about a model. Sizes are in bytes.

    `n_ff` (feed-forward width, 0 if unknown) and `tensors` (every tensor's size, in file
    order) feed the memory estimate and the GPU offload planner. `warnings` name values
    that load but make no sense (`app.core.gguf_checks`), for a person.
    """

    path: Path
    file_size: int
    version: int
    architecture: str
    name: str
    n_params: int
    quant: str
    tensor_bytes: int
    context_length: int
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: int
    head_dim_k: int
    head_dim_v: int
    n_vocab: int
    chat_template: str | None
    bos_token: str | None
    eos_token: str | None
    split_count: int
    n_ff: int = 0
    tensors: tuple[TensorSize, ...] = field(default=(), repr=False)
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class _TensorInfo:
    name: str
    ggml_type: GGMLQuantizationType
    n_elements: int
    n_bytes: int
    offset: int
    dims: tuple[int, ...] = ()


class _EndOfFile(Exception):
    """The file ends before the header does."""


class _DamagedHeader(Exception):
    """The header holds something no GGUF writer produces; the message says what."""


class _UnknownTensorType(Exception):
    """A tensor uses a ggml type id this version of the gguf package does not know."""

    def __init__(self, tensor: str, type_id: int) -> None:
        super().__init__(tensor, type_id)
        self.tensor = tensor
        self.type_id = type_id


def known_architectures() -> frozenset[str]:
    """Model architecture names this build knows, from the `gguf` package."""
    from gguf import MODEL_ARCH_NAMES

    return frozenset(MODEL_ARCH_NAMES.values()) - {_VISION_PROJECTOR_ARCH}


def read_gguf_info(path: Path | str) -> GGUFInfo:
    """Validate a GGUF file and describe the model in it, reading only its header.

    Args:
        path: The .gguf file. For a split model, its first shard (which then describes only
            the tensors in that shard).

    Returns:
        The model's description.

    Raises:
        ModelFileError: The file is missing, unreadable, not a GGUF, damaged or incomplete.
        UnsupportedModelError: A well-formed GGUF this build cannot run (GGUF version,
            architecture or tensor type unknown, or not a language model).

    A value that would make llama.cpp crash (zero layers, say) is refused as a
    `ModelFileError` naming the key; nonsense that loads is in `GGUFInfo.warnings`.
    """
    path = Path(path)
    file_size = _check_regular_file(path)
    try:
        with open(path, "rb") as stream:
            return _read_open_file(path, stream, file_size)
    except PermissionError as exc:
        raise ModelFileError(
            f"Hearth is not allowed to read '{path.name}' (permission denied): "
            "check the file's permissions or copy it somewhere you own.",
            path=path,
        ) from exc
    except OSError as exc:
        raise ModelFileError(
            f"'{path.name}' could not be read ({exc.strerror or exc}): check that the disk or "
            "network share is available, or copy the file elsewhere and pick it again.",
            path=path,
        ) from exc


def shown(text: str, limit: int = 80) -> str:
    """Text from a file, safe to print in one line: control and unprintable characters
    escaped (\\n, \\x00, \\ufffd...), at most `limit` characters then an ellipsis."""
    out: list[str] = []
    for char in text[:limit]:
        if char.isprintable() and char != "\ufffd":
            out.append(char)
        else:
            out.append(char.encode("unicode_escape").decode("ascii"))
    return "".join(out) + ("\u2026" if len(text) > limit else "")


def _check_regular_file(path: Path) -> int:
    """Return the logical size of a regular file, or raise the error that explains why not."""
    try:
        status = path.stat()
    except FileNotFoundError as exc:
        raise ModelFileError(
            f"The model file {path} does not exist: check the path or pick the model again.",
            path=path,
        ) from exc
    except PermissionError as exc:
        raise ModelFileError(
            f"Hearth is not allowed to look at {path} (permission denied): "
            "check the permissions of the file and its folder.",
            path=path,
        ) from exc
    except OSError as exc:
        raise ModelFileError(
            f"The model file {path} cannot be reached ({exc.strerror or exc}): "
            "check the path or pick the model again.",
            path=path,
        ) from exc
    if stat.S_ISDIR(status.st_mode):
        raise ModelFileError(
            f"{path} is a folder, not a model file: pick the .gguf file inside it.", path=path
        )
    if not stat.S_ISREG(status.st_mode):
        raise ModelFileError(f"{path} is not a regular file: pick a .gguf model file.", path=path)
    return status.st_size


def _read_open_file(path: Path, stream: BinaryIO, file_size: int) -> GGUFInfo:
    head = stream.read(512)
    if file_size == 0 or not head:
        raise ModelFileError(
            f"'{path.name}' is empty (0 bytes): the download probably failed; download it again.",
            path=path,
        )
    if head[:4] != _MAGIC:
        raise ModelFileError(_not_gguf_message(path, head, file_size), path=path)
    if file_size < _FIXED_HEADER_SIZE:
        raise ModelFileError(
            f"'{path.name}' is only {file_size} bytes long, too short for a GGUF header: "
            "the download was probably interrupted; download it again.",
            path=path,
        )
    version = _check_version(path, head)
    stream.seek(8)
    parser = _HeaderParser(stream, file_size, offset=8)
    try:
        metadata, tensors, data_offset = _parse_header(parser)
    except _EndOfFile as exc:
        raise ModelFileError(
            f"'{path.name}' is cut short: it ends inside its header, after "
            f"{format_bytes(file_size)}. The download was probably interrupted; download it "
            "again.",
            path=path,
        ) from exc
    except _UnknownTensorType as exc:
        raise UnsupportedModelError(
            f"'{path.name}': tensor '{shown(exc.tensor)}' uses ggml type {exc.type_id}, which this "
            "version of Hearth does not know: update Hearth or pick another quantization.",
            path=path,
        ) from exc
    except (_DamagedHeader, ValueError, struct.error, IndexError, OverflowError, KeyError) as exc:
        raise ModelFileError(
            f"'{path.name}' has a damaged header ({shown(str(exc), 300)}): it is not a valid "
            "GGUF file. Download it again or pick another file.",
            path=path,
        ) from exc
    _check_complete(path, file_size, data_offset, tensors)
    architecture = _check_architecture(path, metadata)
    return _describe(path, file_size, version, architecture, metadata, tensors)


def _check_version(path: Path, head: bytes) -> int:
    version: int = struct.unpack_from("<I", head, 4)[0]
    if version & 0xFFFF == 0 and version:
        # GGUF files made for big-endian machines store the version byte-swapped.
        raise UnsupportedModelError(
            f"'{path.name}' is a big-endian GGUF, made for a different kind of computer: "
            "download the ordinary (little-endian) version of the model.",
            path=path,
        )
    if version not in SUPPORTED_VERSIONS:
        if version == 1:
            reason = "an early format that llama.cpp no longer reads: download a newer conversion"
        else:
            reason = (
                "which this version of Hearth does not understand (it reads versions 2 and 3): "
                "update Hearth or download another conversion"
            )
        raise UnsupportedModelError(
            f"'{path.name}' uses GGUF version {version}, {reason}.", path=path
        )
    return version


class _HeaderParser:
    """Reads GGUF header values from a stream, never past the end of the file."""

    def __init__(self, stream: BinaryIO, file_size: int, offset: int) -> None:
        self._stream = stream
        self._file_size = file_size
        self.offset = offset

    def read(self, n: int) -> bytes:
        if n > self._file_size - self.offset:
            raise _EndOfFile
        data = self._stream.read(n)
        if len(data) != n:
            raise _EndOfFile
        self.offset += n
        return data

    def unpack(self, fmt: str) -> tuple[int, ...]:
        full = "<" + fmt
        result: tuple[int, ...] = struct.unpack(full, self.read(struct.calcsize(full)))
        return result

    def u32(self) -> int:
        return self.unpack("I")[0]

    def u64(self) -> int:
        return self.unpack("Q")[0]

    def count(self, what: str, item_size: int) -> int:
        n = self.u64()
        if n >= _MAX_COUNT:
            raise _DamagedHeader(f"it declares {n:,} {what}")
        if n * item_size > self._file_size - self.offset:
            raise _EndOfFile
        return n

    def string(self) -> str:
        n = self.u64()
        if n >= _MAX_STRING:
            raise _DamagedHeader(f"a text value claims to be {n:,} bytes long")
        return self.read(n).decode("utf-8", errors="replace")

    def strings(self, n: int) -> list[MetadataValue]:
        """`n` strings in a row: the hot loop of reading a vocabulary, kept lean."""
        read = self._stream.read
        unpack_length = _U64.unpack
        end = self._file_size
        offset = self.offset
        items: list[MetadataValue] = []
        for _ in range(n):
            if offset + 8 > end:
                raise _EndOfFile
            (length,) = unpack_length(read(8))
            if length >= _MAX_STRING:
                raise _DamagedHeader(f"a text value claims to be {length:,} bytes long")
            offset += 8 + length
            if offset > end:
                raise _EndOfFile
            items.append(read(length).decode("utf-8", errors="replace"))
        self.offset = offset
        return items

    def value(self, raw_type: int) -> MetadataValue:
        value_type = _value_type(raw_type)
        if value_type == _STRING:
            return self.string()
        if value_type == _ARRAY:
            return self.array()
        return self.unpack(_SCALAR_FORMATS[value_type])[0]

    def array(self) -> MetadataValue:
        item_type = _value_type(self.u32())
        fmt = _SCALAR_FORMATS.get(item_type)
        if fmt is None:  # strings and nested arrays: at least a 8-byte length each
            n = self.count("array items", 8)
            if item_type == _STRING:
                return self.strings(n)
            return [self.value(item_type) for _ in range(n)]
        import numpy as np

        dtype = np.dtype("<" + fmt)
        n = self.count("array items", dtype.itemsize)
        return np.frombuffer(self.read(n * dtype.itemsize), dtype=dtype)


def _value_type(raw_type: int) -> int:
    if not 0 <= raw_type <= _LAST_VALUE_TYPE:
        raise _DamagedHeader(f"unknown metadata value type {raw_type}")
    return raw_type


def _parse_header(
    parser: _HeaderParser,
) -> tuple[dict[str, MetadataValue], list[_TensorInfo], int]:
    """Parse metadata and tensor infos; return them with the offset of the tensor data."""
    from gguf import GGUF_DEFAULT_ALIGNMENT

    n_tensors = parser.count("tensors", 8 + 4 + 4 + 8)
    n_keys = parser.count("metadata keys", 8 + 4 + 1)
    metadata: dict[str, MetadataValue] = {}
    for _ in range(n_keys):
        key = parser.string()
        if key in metadata:
            raise _DamagedHeader(f"metadata key '{shown(key)}' appears twice")
        metadata[key] = parser.value(parser.u32())
    tensors = [_read_tensor_info(parser) for _ in range(n_tensors)]
    if len({tensor.name for tensor in tensors}) != len(tensors):
        raise _DamagedHeader("two tensors share a name")
    alignment = metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise _DamagedHeader(f"general.alignment {shown(repr(alignment))} is not a power of two")
    for tensor in tensors:
        if tensor.offset % alignment:
            raise _DamagedHeader(
                f"tensor '{shown(tensor.name)}' is not aligned to {alignment} bytes"
            )
    data_offset = -(-parser.offset // alignment) * alignment
    return metadata, tensors, data_offset


def _read_tensor_info(parser: _HeaderParser) -> _TensorInfo:
    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    name = parser.string()
    n_dims = parser.u32()
    if n_dims > _MAX_DIMS:
        raise _DamagedHeader(f"tensor '{shown(name)}' has {n_dims} dimensions")
    dims = parser.unpack(f"{n_dims}Q")
    type_id = parser.u32()
    offset = parser.u64()
    try:
        ggml_type = GGMLQuantizationType(type_id)
    except ValueError:
        raise _UnknownTensorType(name, type_id) from None
    block_size, type_size = GGML_QUANT_SIZES[ggml_type]
    if dims and dims[0] % block_size:
        raise _DamagedHeader(
            f"tensor '{shown(name)}' rows do not fit whole {ggml_type.name} blocks"
        )
    n_elements = prod(dims)
    n_bytes = n_elements // block_size * type_size
    if n_bytes > _MAX_TENSOR_BYTES:
        raise _DamagedHeader(f"tensor '{shown(name)}' claims {n_bytes:,} bytes")
    return _TensorInfo(name, ggml_type, n_elements, n_bytes, offset, tuple(dims))


def _check_complete(
    path: Path, file_size: int, data_offset: int, tensors: list[_TensorInfo]
) -> None:
    """Raise if the tensor data reaches past the end of the file."""
    data_end = max((data_offset + t.offset + t.n_bytes for t in tensors), default=data_offset)
    missing = data_end - file_size
    if missing > 0:
        raise ModelFileError(
            f"'{path.name}' is incomplete: its tensors need {format_bytes(data_end)} but the "
            f"file holds only {format_bytes(file_size)} ({missing:,} bytes missing). The "
            "download was probably interrupted; download it again.",
            path=path,
        )


def _check_architecture(path: Path, metadata: dict[str, MetadataValue]) -> str:
    architecture = metadata.get("general.architecture")
    if not isinstance(architecture, str) or not architecture:
        raise UnsupportedModelError(
            f"'{path.name}' does not say which model architecture it holds "
            "(general.architecture is missing): it is not a model llama.cpp can run. "
            "Pick another file.",
            path=path,
        )
    if metadata.get("general.type") == "adapter":
        raise UnsupportedModelError(
            f"'{path.name}' is a LoRA adapter, not a model: pick the base model file instead.",
            path=path,
        )
    if architecture == _VISION_PROJECTOR_ARCH:
        raise UnsupportedModelError(
            f"'{path.name}' is a vision projector (mmproj) that goes alongside a model, "
            "not a chat model itself: pick the main model file.",
            path=path,
        )
    if architecture not in known_architectures():
        raise UnsupportedModelError(
            f"'{path.name}': '{shown(architecture)}' is not an architecture this version of "
            "llama.cpp knows; update Hearth or pick another model.",
            path=path,
        )
    return architecture


def _describe(
    path: Path,
    file_size: int,
    version: int,
    architecture: str,
    metadata: dict[str, MetadataValue],
    tensors: list[_TensorInfo],
) -> GGUFInfo:
    def arch_int(key: str, default: int = 0) -> int:
        return _as_int(metadata.get(f"{architecture}.{key}"), default)

    n_embd = arch_int("embedding_length")
    n_head = arch_int("attention.head_count")
    default_head_dim = n_embd // n_head if n_head else 0
    tokens = metadata.get("tokenizer.ggml.tokens")
    token_list = tokens if isinstance(tokens, list) else []
    n_vocab = len(token_list) or arch_int("vocab_size")
    warnings = check_values(path, architecture, metadata, n_vocab)
    name = metadata.get("general.name")
    template = metadata.get("tokenizer.chat_template")
    return GGUFInfo(
        path=path,
        file_size=file_size,
        version=version,
        architecture=architecture,
        name=name if isinstance(name, str) and name.strip() else path.stem,
        n_params=sum(t.n_elements for t in tensors),
        quant=_quant_name(metadata.get("general.file_type"), tensors),
        tensor_bytes=sum(t.n_bytes for t in tensors),
        context_length=arch_int("context_length"),
        n_layer=arch_int("block_count"),
        n_embd=n_embd,
        n_head=n_head,
        n_head_kv=arch_int("attention.head_count_kv", n_head),
        head_dim_k=arch_int("attention.key_length", default_head_dim),
        head_dim_v=arch_int("attention.value_length", default_head_dim),
        n_vocab=n_vocab,
        chat_template=template if isinstance(template, str) else None,
        bos_token=_token_text(token_list, metadata.get("tokenizer.ggml.bos_token_id")),
        eos_token=_token_text(token_list, metadata.get("tokenizer.ggml.eos_token_id")),
        split_count=_as_int(metadata.get("split.count"), 1),
        n_ff=arch_int("feed_forward_length"),
        tensors=tuple(TensorSize(t.name, t.n_bytes, t.ggml_type.name, t.dims) for t in tensors),
        warnings=warnings,
    )


def _as_int(value: MetadataValue | None, default: int) -> int:
    """An integer metadata value; for a per-layer array, its largest item."""
    import numpy as np

    if isinstance(value, np.ndarray):
        if value.size == 0 or value.dtype.kind not in "iu":
            return default
        return int(value.max())
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return default


def _token_text(tokens: list[MetadataValue], token_id: MetadataValue | None) -> str | None:
    if isinstance(token_id, int) and 0 <= token_id < len(tokens):
        text = tokens[token_id]
        return text if isinstance(text, str) else None
    return None


def _quant_name(file_type: MetadataValue | None, tensors: list[_TensorInfo]) -> str:
    """Name the quantization: from general.file_type, else the type holding most bytes."""
    from gguf import LlamaFileType

    if isinstance(file_type, int):
        try:
            llama_type = LlamaFileType(file_type)
        except ValueError:
            llama_type = LlamaFileType.GUESSED
        if llama_type is not LlamaFileType.GUESSED:
            return llama_type.name.removeprefix("MOSTLY_").removeprefix("ALL_")
    bytes_by_type: Counter[str] = Counter()
    for tensor in tensors:
        bytes_by_type[tensor.ggml_type.name] += tensor.n_bytes
    if not bytes_by_type:
        return "unknown"
    return bytes_by_type.most_common(1)[0][0]


def _not_gguf_message(path: Path, head: bytes, file_size: int) -> str:
    """Explain what a file without the GGUF signature most likely is."""
    what = _sniff(head, file_size)
    if what is None:
        return (
            f"'{path.name}' is not a GGUF file (it does not start with the GGUF signature): "
            "pick a .gguf model file, or download it again if it should be one."
        )
    return f"'{path.name}' is not a GGUF model: {what}"


def _sniff(head: bytes, file_size: int) -> str | None:
    """Recognise common files saved under a .gguf name; None if unrecognised."""
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"PK\x03\x04"):
        return (
            "it is a ZIP archive (PyTorch checkpoints are ZIP files too). Unzip it if it holds "
            "a .gguf, or download a GGUF version of the model."
        )
    if head.startswith(b"\x1f\x8b"):
        return "it is gzip-compressed. Decompress it first, or download the .gguf file itself."
    if head[:4] in (b"lmgg", b"fmgg", b"tjgg", b"algg"):
        return (
            "it is an old GGML/GGJT model from before GGUF, which llama.cpp no longer reads. "
            "Download a GGUF version of the model."
        )
    if len(head) > 8 and head[8:9] == b"{" and 2 <= struct.unpack_from("<Q", head)[0] < file_size:
        return (
            "it is a safetensors file. Convert it with llama.cpp's convert_hf_to_gguf.py, or "
            "download a GGUF version of the model."
        )
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return (
            "it is a PyTorch (pickle) checkpoint. Convert it with llama.cpp's "
            "convert_hf_to_gguf.py, or download a GGUF version of the model."
        )
    if text.startswith(b"version https://git-lfs"):
        return (
            "it is a Git LFS pointer, a placeholder for the real file (the repository was "
            "cloned without Git LFS). Download the file itself, or run 'git lfs pull'."
        )
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")):
        return (
            "it is a web page saved under a .gguf name (the link probably led to a page or a "
            "login, not the file). Download the model again from its direct download link."
        )
    if text.startswith((b"{", b"[")):
        return "it holds JSON text, often an error reply from a server. Download the model again."
    if _looks_like_text(head):
        return "it is a text file. Pick a .gguf model file, or download the model again."
    return None


def _looks_like_text(head: bytes) -> bool:
    decoded = head.decode("utf-8", errors="replace").rstrip("\ufffd")  # a cut-off last char
    if not decoded or "\ufffd" in decoded:
        return False
    return all(char.isprintable() or char in "\t\r\n" for char in decoded)
