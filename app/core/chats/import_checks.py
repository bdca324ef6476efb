"""Checks on an import document: each value must be what export writes, or it is refused.

`DocumentReader` turns JSON values into Hearth values and raises a `TransferError` naming
the source, the place in the document (`conversations[2].messages[5].seed`) and the
conversation, for anything the store or a later export could not hold: wrong types, lone
surrogates, times out of range, seeds out of range, NaN, nesting too deep.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from app.core.errors import HearthError, InvalidSettingError
from app.core.inference.sampling import MAX_SEED, SamplingSettings
from app.core.inference.token_data import (
    MAX_TOP_N,
    MIN_LOGPROB,
    SettingsChange,
    TokenRecord,
    TopToken,
)

MAX_PIECE_BYTES = 0xFFFF
_INT32 = 2**31


class TransferError(HearthError):
    """An export or import file that cannot be read, written or understood."""


def iso_time(timestamp: float) -> str:
    """ISO 8601 in UTC with microseconds, as export writes times."""
    moment = datetime.fromtimestamp(timestamp, tz=timezone.utc)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _bad_unicode(text: str) -> str | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return f"holds a lone surrogate (\\u{ord(text[exc.start]):04x}) at character {exc.start}"
    return None


class DocumentReader:
    """Type checks that raise a `TransferError` naming the source, place and conversation."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.conversation = ""

    def error(self, where: str, problem: str) -> TransferError:
        suffix = f" (in {self.conversation})" if self.conversation else ""
        return TransferError(f"{self.source}: {where} {problem}{suffix}.", path=self.source)

    def mapping(self, value: Any, where: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.error(where, "must be a JSON object")
        return value

    def sequence(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.error(where, "must be a JSON list")
        return value

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.error(where, "must be text")
        problem = _bad_unicode(value)
        if problem:
            raise self.error(where, problem)
        return value

    def flag(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(where, "must be true or false")
        return value

    def optional_int(self, value: Any, where: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(where, "must be a whole number")
        return value

    def seed(self, value: Any, where: str) -> int | None:
        seed = self.optional_int(value, where)
        if seed is not None and not 0 <= seed <= MAX_SEED:
            raise self.error(where, f"must be between 0 and {MAX_SEED} (got {seed})")
        return seed

    def time(self, value: Any, where: str, default: float) -> float:
        if value is None:
            return default
        moment: float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise self.error(where, "must be a finite time")
            moment = float(value)
        elif isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                pass
            else:
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=timezone.utc)
                moment = parsed.timestamp()
        if moment is None:
            raise self.error(where, "must be an ISO 8601 time")
        try:
            iso_time(moment)
        except (OverflowError, ValueError, OSError) as exc:
            raise self.error(where, f"is out of range ({value!r})") from exc
        return moment

    def settings(self, value: Any, where: str) -> SamplingSettings | None:
        if value is None:
            return None
        values = dict(self.mapping(value, where))
        stop = values.get("stop", [])
        for i, item in enumerate(self.sequence(stop, f"{where}.stop")):
            self.text(item, f"{where}.stop[{i}]")
        try:
            return SamplingSettings.from_dict(values)
        except InvalidSettingError as exc:
            raise self.error(where, f"are invalid: {exc}") from exc
        except TypeError as exc:
            raise self.error(where, f"are malformed: {exc}") from exc

    def json_value(self, value: Any, where: str) -> Any:
        """Any JSON value that export can write back (finite numbers, valid text)."""
        try:
            json.dumps(value, allow_nan=False, ensure_ascii=False).encode("utf-8")
        except RecursionError as exc:
            raise self.error(where, "is nested too deeply") from exc
        except UnicodeEncodeError as exc:
            raise self.error(where, "holds a lone surrogate") from exc
        except (ValueError, TypeError) as exc:
            raise self.error(where, f"cannot be written back as JSON ({exc})") from exc
        return value

    # --- token data in the OpenAI shape ------------------------------------------------------

    def logprobs(
        self, value: Any, where: str
    ) -> tuple[list[TokenRecord], int, list[SettingsChange]]:
        """Records, top_n and settings changes from `logprobs: {content: [...]}`."""
        data = self.mapping(value, where)
        items = self.sequence(data.get("content"), f"{where}.content")
        records: list[TokenRecord] = []
        top_n = 0
        for i, raw in enumerate(items):
            place = f"{where}.content[{i}]"
            token = self._top_token(raw, place)
            entry = self.mapping(raw, place)
            tops = self.sequence(entry.get("top_logprobs", []), f"{place}.top_logprobs")
            if len(tops) > MAX_TOP_N:
                raise self.error(f"{place}.top_logprobs", f"has more than {MAX_TOP_N} entries")
            top = tuple(
                self._top_token(t, f"{place}.top_logprobs[{k}]") for k, t in enumerate(tops)
            )
            top_n = max(top_n, len(top))
            records.append(TokenRecord(token.token_id, token.piece, token.logprob, top))
        changes: list[SettingsChange] = []
        for i, raw in enumerate(self.sequence(data.get("settings", []), f"{where}.settings")):
            place = f"{where}.settings[{i}]"
            entry = self.mapping(raw, place)
            index = self.optional_int(entry.get("from_token"), f"{place}.from_token")
            if index is None or not 0 <= index <= len(records):
                raise self.error(
                    f"{place}.from_token", f"must be a token index 0 to {len(records)}"
                )
            if changes and index < changes[-1].index:
                raise self.error(f"{place}.from_token", "must not go back")
            settings = self.settings(entry.get("settings"), f"{place}.settings")
            if settings is None:
                raise self.error(f"{place}.settings", "must be given")
            changes.append(SettingsChange(index, settings))
        return records, top_n, changes

    def _top_token(self, value: Any, where: str) -> TopToken:
        entry = self.mapping(value, where)
        text = self.text(entry.get("token"), f"{where}.token")
        logprob = entry.get("logprob")
        if isinstance(logprob, bool) or not isinstance(logprob, int | float):
            raise self.error(f"{where}.logprob", "must be a number")
        if not math.isfinite(logprob) or logprob > 1e-3:
            raise self.error(f"{where}.logprob", f"must be a finite number <= 0 (got {logprob})")
        raw_bytes = entry.get("bytes")
        if raw_bytes is None:
            piece = text.encode("utf-8")
        else:
            items = self.sequence(raw_bytes, f"{where}.bytes")
            if any(
                isinstance(b, bool) or not isinstance(b, int) or not 0 <= b <= 255 for b in items
            ):
                raise self.error(f"{where}.bytes", "must be whole numbers 0 to 255")
            piece = bytes(items)
        if len(piece) > MAX_PIECE_BYTES:
            raise self.error(where, f"is longer than {MAX_PIECE_BYTES} bytes")
        token_id = self.optional_int(entry.get("id"), f"{where}.id")
        if token_id is not None and not -1 <= token_id < _INT32:
            raise self.error(f"{where}.id", f"must be -1 to {_INT32 - 1}")
        return TopToken(
            -1 if token_id is None else token_id, piece, max(float(logprob), MIN_LOGPROB)
        )
