"""What a reply keeps per generated token, and its compact binary packing.

Per token: its id, its bytes, its log-probability under the model's own distribution
(temperature 1) and the top-N alternatives with theirs; per reply: the sampler settings in
force from each token on (a change mid-reply starts a new entry).

Packing (`pack` / `unpack`) is a zlib-compressed little-endian blob; every numeric array is
stored byte plane by byte plane (all first bytes, then all second bytes, ...), which lets
zlib find the runs in ids, indices and floats::

    header   magic "HTD", version u8, top_n u8, width u8 (2 or 4), first_token u32,
             n_tokens u32, n_pieces u32, settings_len u32
    pieces   n_pieces x i32 id, n_pieces x u16 length, then the bytes  (one table per blob:
             each distinct (id, bytes) pair once, since alternatives repeat a lot)
    tokens   n_tokens x index (u16/u32), n_tokens x f32 logprob,
             n_tokens x top_n x index, n_tokens x top_n x f16 logprob
    settings JSON list of [token index, settings dict]

An index equal to the width's maximum means "no alternative there" (imported data may have
fewer than top_n). The chosen token's logprob is kept as float32 (exact to ~1e-7); the
alternatives' as float16 (about three significant digits, plenty for display), except that
an alternative that is the chosen token takes the chosen token's float32 value on unpacking.
Ids are -1 when unknown (data imported in the OpenAI shape without ids).
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from app.core.inference.events import TokenEvent
from app.core.inference.sampling import SamplingSettings

if TYPE_CHECKING:  # numpy is imported on first pack/unpack: the GUI starts without it
    import numpy.typing as npt

TOP_N = 10
"""Alternatives kept per token by default."""
MAX_TOP_N = 20
"""The most alternatives a token may keep."""

MIN_LOGPROB = -9999.0
"""Stands for a probability of zero (JSON has no -inf; OpenAI uses the same value)."""

_MAGIC = b"HTD"
_VERSION = 1
_HEADER = struct.Struct("<3sBBBIIII")
_ZLIB_LEVEL = 6


class TokenDataError(ValueError):
    """A packed token-data blob that cannot be read (damaged, or from a newer Hearth)."""


@dataclass(frozen=True, slots=True)
class TopToken:
    """One alternative for a position: its id (-1 if unknown), bytes and log-probability."""

    token_id: int
    piece: bytes
    logprob: float

    @property
    def text(self) -> str:
        """Readable text (bytes that are not whole UTF-8 shown as escapes)."""
        return self.piece.decode("utf-8", errors="backslashreplace")

    @property
    def prob(self) -> float:
        """The probability, 0 to 1."""
        return math.exp(self.logprob) if self.logprob > MIN_LOGPROB else 0.0

    def __reduce__(self) -> tuple[Any, ...]:
        # Through a constructor, pickling both ways is 4x cheaper than a frozen
        # dataclass's field-by-field state.
        return (make_top, (self.token_id, self.piece, self.logprob))


class Rivals(Sequence[TopToken]):
    """A token's alternatives as three columns (ids, pieces, log-probabilities), best
    first: a read-only sequence of `TopToken`s, made on first read.

    Records cross the engine host's pipe by the thousand while a reply streams, and most
    rivals are only ever packed for storage, which reads the columns. Making ten objects
    per token on arrival cost the app's process more CPU than the rest of the unpickling.
    Equal to (and hashed like) the tuple of its `TopToken`s.
    """

    __slots__ = ("_made", "ids", "logprobs", "pieces")

    def __init__(
        self, ids: tuple[int, ...], pieces: tuple[bytes, ...], logprobs: tuple[float, ...]
    ) -> None:
        if not len(ids) == len(pieces) == len(logprobs):
            raise ValueError("rivals' columns differ in length")
        self.ids, self.pieces, self.logprobs = ids, pieces, logprobs
        self._made: tuple[TopToken, ...] | None = None

    def tops(self) -> tuple[TopToken, ...]:
        """The alternatives as `TopToken`s (made once)."""
        made = self._made
        if made is None:
            made = self._made = tuple(
                [make_top(*t) for t in zip(self.ids, self.pieces, self.logprobs, strict=True)]
            )
        return made

    def __len__(self) -> int:
        return len(self.ids)

    def __bool__(self) -> bool:
        return bool(self.ids)

    @overload
    def __getitem__(self, index: int) -> TopToken: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[TopToken, ...]: ...
    def __getitem__(self, index: int | slice) -> TopToken | tuple[TopToken, ...]:
        return self.tops()[index]

    def __iter__(self) -> Iterator[TopToken]:
        return iter(self.tops())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Rivals):
            return (self.ids, self.pieces, self.logprobs) == (
                other.ids,
                other.pieces,
                other.logprobs,
            )
        if isinstance(other, tuple):
            return self.tops() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.tops())

    def __repr__(self) -> str:
        return repr(self.tops())

    def __reduce__(self) -> tuple[Any, ...]:
        return (Rivals, (self.ids, self.pieces, self.logprobs))


def rival_columns(
    top: Sequence[TopToken],
) -> tuple[tuple[int, ...], tuple[bytes, ...], tuple[float, ...]]:
    """`top`'s ids, pieces and log-probabilities (without making objects, for `Rivals`)."""
    if isinstance(top, Rivals):
        return top.ids, top.pieces, top.logprobs
    return (
        tuple([t.token_id for t in top]),
        tuple([t.piece for t in top]),
        tuple([t.logprob for t in top]),
    )


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """One generated token: what was chosen, how likely it was, and its rivals (best first).

    `settings` are the sampler settings in force when it was chosen (None if unknown).
    """

    token_id: int
    piece: bytes
    logprob: float
    top: tuple[TopToken, ...] | Rivals = ()
    settings: SamplingSettings | None = field(default=None, compare=False)

    @property
    def text(self) -> str:
        """Readable text of the chosen token."""
        return self.piece.decode("utf-8", errors="backslashreplace")

    @property
    def prob(self) -> float:
        """Probability of the chosen token, 0 to 1."""
        return math.exp(self.logprob) if self.logprob > MIN_LOGPROB else 0.0

    def __reduce__(self) -> tuple[Any, ...]:
        # Records cross the engine host's pipe by the thousand: the alternatives go as three
        # tuples of plain values and come back as `Rivals` (one constructor call per record).
        return (
            _record_from_columns,
            (self.token_id, self.piece, self.logprob, *rival_columns(self.top), self.settings),
        )


# Fast constructors. A frozen dataclass's generated __init__ sets each field through
# `object.__setattr__`, a Python-level call per field; the slots' own descriptors set them
# in C, so these build the very same objects (equal, hashable, immutable) in about half the
# time. They are used where records are made by the thousand while a reply streams.
_new = object.__new__
_top_fields = tuple(vars(TopToken)[name].__set__ for name in ("token_id", "piece", "logprob"))
_record_fields = tuple(
    vars(TokenRecord)[name].__set__ for name in ("token_id", "piece", "logprob", "top", "settings")
)


def make_top(token_id: int, piece: bytes, logprob: float) -> TopToken:
    """`TopToken(token_id, piece, logprob)`, made faster."""
    top: TopToken = _new(TopToken)
    set_id, set_piece, set_logprob = _top_fields
    set_id(top, token_id)
    set_piece(top, piece)
    set_logprob(top, logprob)
    return top


def make_record(
    token_id: int,
    piece: bytes,
    logprob: float,
    top: tuple[TopToken, ...] | Rivals = (),
    settings: SamplingSettings | None = None,
) -> TokenRecord:
    """`TokenRecord(token_id, piece, logprob, top, settings)`, made faster."""
    record: TokenRecord = _new(TokenRecord)
    set_id, set_piece, set_logprob, set_top, set_settings = _record_fields
    set_id(record, token_id)
    set_piece(record, piece)
    set_logprob(record, logprob)
    set_top(record, top)
    set_settings(record, settings)
    return record


def _record_from_columns(
    token_id: int,
    piece: bytes,
    logprob: float,
    top_ids: tuple[int, ...],
    top_pieces: tuple[bytes, ...],
    top_logprobs: tuple[float, ...],
    settings: SamplingSettings | None,
) -> TokenRecord:
    return make_record(
        token_id, piece, logprob, Rivals(top_ids, top_pieces, top_logprobs), settings
    )


@dataclass(frozen=True)
class SettingsChange:
    """From token `index` on (0-based, within the reply), these settings were in force."""

    index: int
    settings: SamplingSettings


@dataclass(frozen=True)
class TokenData:
    """The token records of one reply and the settings changes along it."""

    records: tuple[TokenRecord, ...]
    top_n: int
    changes: tuple[SettingsChange, ...] = ()

    def __len__(self) -> int:
        return len(self.records)

    def settings_at(self, index: int) -> SamplingSettings | None:
        """The settings in force for token `index`."""
        current = None
        for change in self.changes:
            if change.index > index:
                break
            current = change.settings
        return current


# --- from the engine ------------------------------------------------------------------------


def logprob_of(prob: float) -> float:
    """`log(prob)`, with `MIN_LOGPROB` for zero."""
    return max(math.log(prob), MIN_LOGPROB) if prob > 0.0 else MIN_LOGPROB


def record_from_event(event: TokenEvent, token_bytes: Callable[[int], bytes]) -> TokenRecord:
    """A record from the engine's `TokenEvent`; `token_bytes` maps ids to bytes (cached)."""
    alternatives = event.alternatives
    ids = tuple([a.token_id for a in alternatives])
    top = Rivals(
        ids,
        tuple([token_bytes(i) for i in ids]),
        tuple([logprob_of(a.prob) for a in alternatives]),
    )
    return make_record(
        event.token_id, token_bytes(event.token_id), logprob_of(event.prob), top, event.settings
    )


def settings_changes(
    records: Sequence[TokenRecord], first: int = 0, last: SamplingSettings | None = None
) -> list[SettingsChange]:
    """Where the settings change along `records` (numbered from `first`); `last` is what
    was in force before them (None: the first record's settings start a change)."""
    changes: list[SettingsChange] = []
    for i, record in enumerate(records):
        s = record.settings
        if s is None or s is last or s == last:
            continue
        changes.append(SettingsChange(first + i, s))
        last = s
    return changes


def token_data(records: Sequence[TokenRecord], top_n: int | None = None) -> TokenData:
    """`TokenData` from records (top_n defaults to the longest alternatives list)."""
    n = top_n if top_n is not None else max((len(r.top) for r in records), default=0)
    return TokenData(tuple(records), n, tuple(settings_changes(records)))


# --- packing ----------------------------------------------------------------------------------


def pack(
    records: Sequence[TokenRecord],
    *,
    top_n: int | None = None,
    first_token: int = 0,
    changes: Sequence[SettingsChange] | None = None,
) -> bytes:
    """Pack records (numbered from `first_token` within their reply) into a blob.

    `changes` default to those found in the records' settings.
    """
    n = top_n if top_n is not None else max((len(r.top) for r in records), default=0)
    if not 0 <= n <= MAX_TOP_N:
        raise ValueError(f"top_n must be between 0 and {MAX_TOP_N} (got {n})")
    if changes is None:
        changes = settings_changes(records, first_token)
    table: dict[tuple[int, bytes], int] = {}
    chosen: list[int] = []
    alt_index: list[int] = []
    alt_logprob: list[float] = []
    lookup = table.setdefault
    for record in records:
        chosen.append(lookup((record.token_id, record.piece), len(table)))
        top_ids, top_pieces, top_logprobs = rival_columns(record.top)
        for alt in zip(top_ids[:n], top_pieces[:n], strict=True):
            alt_index.append(lookup(alt, len(table)))
        alt_logprob.extend(top_logprobs[:n])
        missing = n - min(len(top_ids), n)
        if missing:
            alt_index.extend([-1] * missing)
            alt_logprob.extend([0.0] * missing)
    import numpy as np

    width = 2 if len(table) < 0xFFFF else 4
    index_type = np.uint16 if width == 2 else np.uint32
    none = np.iinfo(index_type).max
    alts = np.array(alt_index, dtype=np.int64)
    alts[alts < 0] = none
    pieces = list(table)
    settings = json.dumps(
        [[c.index, c.settings.to_dict()] for c in changes], separators=(",", ":")
    ).encode()
    body = b"".join(
        (
            _HEADER.pack(
                _MAGIC, _VERSION, n, width, first_token, len(records), len(pieces), len(settings)
            ),
            _planes(np.array([p[0] for p in pieces], dtype="<i4")),
            _planes(np.array([len(p[1]) for p in pieces], dtype="<u2")),
            b"".join(p[1] for p in pieces),
            _planes(np.array(chosen, dtype=index_type).astype(f"<u{width}")),
            _planes(np.array([r.logprob for r in records], dtype="<f4")),
            _planes(alts.astype(f"<u{width}")),
            _planes(np.array(alt_logprob, dtype="<f2").clip(MIN_LOGPROB, 0.0)),
            settings,
        )
    )
    return zlib.compress(body, _ZLIB_LEVEL)


def _planes(array: npt.NDArray[Any]) -> bytes:
    """The array's bytes, byte plane by byte plane."""
    import numpy as np

    size = array.dtype.itemsize
    return np.ascontiguousarray(array).view(np.uint8).reshape(-1, size).T.tobytes()


@dataclass(frozen=True)
class PackedChunk:
    """One unpacked blob: its records, where they start in the reply, and its changes."""

    first_token: int
    top_n: int
    records: tuple[TokenRecord, ...]
    changes: tuple[SettingsChange, ...]


def unpack(blob: bytes) -> PackedChunk:
    """Read a blob written by `pack`.

    Raises:
        TokenDataError: the blob is damaged or from a newer Hearth.
    """
    try:
        body = zlib.decompress(blob)
        return _unpack(body)
    except TokenDataError:
        raise
    except (zlib.error, struct.error, ValueError, TypeError, KeyError, IndexError) as exc:
        raise TokenDataError(f"damaged token data ({exc})") from exc


def _unpack(body: bytes) -> PackedChunk:
    import numpy as np

    magic, version, n, width, first, n_tokens, n_pieces, settings_len = _HEADER.unpack_from(body)
    if magic != _MAGIC:
        raise TokenDataError("not Hearth token data")
    if version > _VERSION:
        raise TokenDataError(f"token data version {version} is newer than this Hearth reads")
    if width not in (2, 4):
        raise TokenDataError(f"bad index width {width}")
    at = _HEADER.size

    def take(dtype: str, count: int) -> npt.NDArray[Any]:
        nonlocal at
        item = np.dtype(dtype).itemsize
        size = item * count
        if at + size > len(body):
            raise TokenDataError("token data is truncated")
        raw = np.frombuffer(body, dtype=np.uint8, count=size, offset=at)
        at += size
        if item == 1:
            return raw
        return np.ascontiguousarray(raw.reshape(item, count).T).view(dtype).reshape(count)

    ids = take("<i4", n_pieces).tolist()
    lengths = take("<u2", n_pieces).tolist()
    raw = take("u1", int(sum(lengths))).tobytes()
    pieces: list[bytes] = []
    offset = 0
    for length in lengths:
        pieces.append(raw[offset : offset + length])
        offset += length
    chosen = take(f"<u{width}", n_tokens).tolist()
    logprobs = take("<f4", n_tokens).astype(np.float64).tolist()
    alt_index = take(f"<u{width}", n_tokens * n).tolist()
    alt_logprob = take("<f2", n_tokens * n).astype(np.float64).tolist()
    settings_raw = body[at : at + settings_len]
    if len(settings_raw) != settings_len:
        raise TokenDataError("token data is truncated")
    changes = tuple(
        SettingsChange(int(index), SamplingSettings.from_dict(values))
        for index, values in json.loads(settings_raw)
    )
    tops = [TopToken(i, p, 0.0) for i, p in zip(ids, pieces, strict=True)]
    records: list[TokenRecord] = []
    change_at = 0
    current: SamplingSettings | None = None
    for t in range(n_tokens):
        while change_at < len(changes) and changes[change_at].index <= first + t:
            current = changes[change_at].settings
            change_at += 1
        c = chosen[t]
        logprob = logprobs[t]
        top: list[TopToken] = []
        for k in range(t * n, t * n + n):
            a = alt_index[k]
            if a >= n_pieces:
                continue
            base = tops[a]
            value = logprob if a == c else alt_logprob[k]
            top.append(make_top(base.token_id, base.piece, value))
        chosen_piece = tops[c]
        records.append(
            make_record(chosen_piece.token_id, chosen_piece.piece, logprob, tuple(top), current)
        )
    return PackedChunk(first, n, tuple(records), changes)


def join_chunks(chunks: Iterable[PackedChunk]) -> TokenData:
    """One reply's `TokenData` from its chunks in order (they must follow each other)."""
    records: list[TokenRecord] = []
    changes: list[SettingsChange] = []
    top_n = 0
    for chunk in chunks:
        if chunk.first_token != len(records):
            raise TokenDataError(
                f"token data has a gap: a chunk starts at token {chunk.first_token}, "
                f"after {len(records)} tokens"
            )
        records.extend(chunk.records)
        top_n = max(top_n, chunk.top_n)
        for change in chunk.changes:
            if not changes or changes[-1].settings != change.settings:
                changes.append(change)
    return TokenData(tuple(records), top_n, tuple(changes))


# --- the OpenAI shape -------------------------------------------------------------------------


def to_openai(data: TokenData) -> dict[str, object]:
    """`{"content": [{token, logprob, bytes, top_logprobs: [...]}, ...]}` as OpenAI writes it.

    Hearth adds `id` to every entry and `settings` (the changes along the reply) beside
    `content`; readers of the OpenAI shape ignore both.
    """
    return {
        "content": [
            {
                "token": r.text,
                "logprob": r.logprob,
                "bytes": list(r.piece),
                "id": r.token_id,
                "top_logprobs": [
                    {
                        "token": t.text,
                        "logprob": t.logprob,
                        "bytes": list(t.piece),
                        "id": t.token_id,
                    }
                    for t in r.top
                ],
            }
            for r in data.records
        ],
        "settings": [
            {"from_token": c.index, "settings": c.settings.to_dict()} for c in data.changes
        ],
    }
