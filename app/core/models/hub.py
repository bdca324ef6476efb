"""Search the Hugging Face Hub for GGUF models and list a repo's files grouped by quant.

Everything goes through the real `huggingface_hub` client (`HfApi`), pointed at
`endpoint` (default: the client's own, i.e. `HF_ENDPOINT`). Its exceptions, and the
network's, become the `HubError` subclasses below, with messages a person can act on.
Tokens live where `huggingface_hub` keeps them (`HF_TOKEN`, else the file at
`huggingface_hub.constants.HF_TOKEN_PATH`, i.e. `$HF_HOME/token`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import httpx2
import huggingface_hub
from huggingface_hub import HfApi, constants, get_session
from huggingface_hub.errors import (
    DisabledRepoError,
    EntryNotFoundError,
    HfHubHTTPError,
    HFValidationError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.errors import GatedRepoError as HfGatedRepoError

from app.core.errors import HearthError
from app.core.models.library import fit_verdict
from app.core.units import format_bytes

log = logging.getLogger(__name__)

SORTS = ("downloads", "likes", "trending", "recent")
_HUB_SORT = {
    "downloads": "downloads",
    "likes": "likes",
    "trending": "trending_score",
    "recent": "last_modified",
}
_SEARCH_EXPAND = [
    "author",
    "downloads",
    "likes",
    "lastModified",
    "gated",
    "gguf",
    "safetensors",
    "cardData",
    "config",
    "tags",
    "pipeline_tag",
]
_API_TIMEOUT_S = 30.0
_PROBE_TIMEOUT_S = 10.0
_PROBE_VALID_S = 60.0

# Quant types as they appear in GGUF file and folder names ("Q4_K_M", "iq4_xs", "BF16"...).
_QUANT_RE = re.compile(
    r"(?<![a-z0-9])("
    r"iq[1-4]_(?:xxs|xs|s|m|nl)"
    r"|q[2-8]_k(?:_(?:xl|s|m|l))?"
    r"|q[4-8]_[01]"
    r"|tq[12]_0"
    r"|mxfp4(?:_moe)?"
    r"|bf16|fp16|fp32|f16|f32"
    r")(?![a-z0-9])",
    re.IGNORECASE,
)
_SPLIT_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_QUANT_ALIASES = {"FP16": "F16", "FP32": "F32"}
_RECOMMENDED_QUANT = "Q4_K_M"


class HubError(HearthError):
    """The Hub could not answer what was asked (base of every Hub failure)."""


class HubOfflineError(HubError):
    """The Hub cannot be reached: no network, a wrong HF_ENDPOINT, or HF_HUB_OFFLINE=1."""


class RepoNotFoundError(HubError):
    """No such model repo (or revision), or it is private and the token has no access."""


class GatedRepoError(HubError):
    """The repo is gated: its licence must be accepted on the Hub and a token given."""

    def __init__(self, message: str, *, repo_id: str) -> None:
        super().__init__(message)
        self.repo_id = repo_id


class HubAuthError(HubError):
    """The Hub rejected the access token."""


class HubFileNotFoundError(HubError):
    """The repo exists but has no such file (or no file of the asked quant)."""


@dataclass(frozen=True)
class HubModel:
    """One search result.

    Attributes:
        repo_id: "owner/name".
        author: The owner.
        downloads: Downloads in the last month.
        likes: Likes.
        last_modified: ISO 8601 time of the last commit, if the Hub gave it.
        gated: False, or "auto"/"manual" when the licence must be accepted first.
        n_params: Parameter count from the Hub's GGUF or safetensors metadata; 0 if unknown.
        architecture: "llama", "qwen2"...; "" if unknown.
        licence: "apache-2.0"...; None if unknown.
        pipeline_tag: "text-generation"...; None if unknown.
        tags: The repo's tags.
    """

    repo_id: str
    author: str
    downloads: int
    likes: int
    last_modified: str | None
    gated: bool | str
    n_params: int
    architecture: str
    licence: str | None
    pipeline_tag: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True)
class HubFile:
    """A file in a repo: path inside the repo, size, and LFS sha256 (None if not in LFS)."""

    path: str
    size: int
    sha256: str | None


@dataclass(frozen=True)
class QuantOption:
    """One downloadable model of a repo: a GGUF file, or all shards of a split one.

    Attributes:
        quant: "Q4_K_M", "F16"...; "unknown" when the name does not say.
        files: Every file, shards in order.
        size_bytes: All files together.
        is_split: Several shards ("-00001-of-00003.gguf").
        is_projector: A vision projector (mmproj), not a chat model by itself.
    """

    quant: str
    files: tuple[HubFile, ...]
    size_bytes: int
    is_split: bool
    is_projector: bool

    @property
    def label(self) -> str:
        """E.g. "Q4_K_M · 4.4 GiB · 2 parts" or "F16 · 600.0 MiB · vision projector"."""
        parts = [self.quant, format_bytes(self.size_bytes)]
        if self.is_split:
            parts.append(f"{len(self.files)} parts")
        if self.is_projector:
            parts.append("vision projector")
        return " · ".join(parts)

    @property
    def name(self) -> str:
        """The first file's name without folders."""
        return PurePosixPath(self.files[0].path).name


@dataclass(frozen=True)
class RepoFiles:
    """A repo's GGUF files at one commit, grouped into quant options."""

    repo_id: str
    revision: str
    options: tuple[QuantOption, ...]
    gated: bool | str = False

    def recommended(self) -> QuantOption | None:
        """Q4_K_M, else another Q4, else the first option that is not a projector."""
        models = [o for o in self.options if not o.is_projector]
        for wanted in (
            lambda o: o.quant == _RECOMMENDED_QUANT,
            lambda o: o.quant.startswith(("Q4", "IQ4")),
            lambda o: True,
        ):
            for option in models:
                if wanted(option):
                    return option
        return None

    def option(self, quant: str) -> QuantOption | None:
        """The first non-projector option of this quant (case-insensitive), else None."""
        wanted = quant.upper()
        return next(
            (o for o in self.options if o.quant == wanted and not o.is_projector),
            None,
        )


class HubClient:
    """Search and list GGUF repos on the Hub (or the server at `endpoint`).

    Args:
        endpoint: Hub base URL; None uses huggingface_hub's (`HF_ENDPOINT` at import).
        token: Access token; None uses the stored one (`HF_TOKEN` or `$HF_HOME/token`).
    """

    def __init__(self, endpoint: str | None = None, token: str | None = None) -> None:
        self.endpoint = (endpoint or constants.ENDPOINT).rstrip("/")
        self.token = token
        self._api = HfApi(endpoint=self.endpoint, token=token)
        self._reachable_until = 0.0
        self._probe_lock = threading.Lock()

    def search(self, query: str, *, sort: str = "downloads", limit: int = 30) -> list[HubModel]:
        """GGUF model repos matching `query`, best first by `sort` (one of `SORTS`)."""
        if sort not in _HUB_SORT:
            raise HubError(f"Unknown sort '{sort}': choose one of {', '.join(SORTS)}.")
        self._ensure_reachable()
        with hub_errors(self.endpoint):
            infos = self._api.list_models(
                search=query.strip() or None,
                filter="gguf",
                sort=_HUB_SORT[sort],  # type: ignore[arg-type]
                limit=max(1, limit),
                expand=_SEARCH_EXPAND,  # type: ignore[arg-type]
            )
            return [_hub_model(info) for info in infos]

    def repo_files(self, repo_id: str, revision: str = "main") -> RepoFiles:
        """The repo's GGUF files at `revision`, grouped by quant, with sizes and sha256."""
        with hub_errors(self.endpoint, repo_id=repo_id, revision=revision):
            info = self._api.model_info(
                repo_id, revision=revision, files_metadata=True, timeout=_API_TIMEOUT_S
            )
        files = [
            HubFile(
                path=sibling.rfilename,
                size=int(sibling.lfs.size if sibling.lfs else sibling.size or 0),
                sha256=sibling.lfs.sha256 if sibling.lfs else None,
            )
            for sibling in info.siblings or []
            if sibling.rfilename.lower().endswith(".gguf")
        ]
        return RepoFiles(
            repo_id=info.id,
            revision=info.sha or revision,
            options=group_quant_options(files),
            gated=info.gated or False,
        )

    def _ensure_reachable(self) -> None:
        """Fail fast when the Hub cannot be reached.

        `HfApi.list_models` retries connection errors five times with back-off (~25 s);
        one quick request first turns "offline" into an immediate `HubOfflineError`.
        A success is remembered for a minute.
        """
        with self._probe_lock:
            if time.monotonic() < self._reachable_until:
                return
            with hub_errors(self.endpoint):
                get_session().head(
                    f"{self.endpoint}/", timeout=_PROBE_TIMEOUT_S, follow_redirects=False
                )
            self._reachable_until = time.monotonic() + _PROBE_VALID_S


def quant_of(path: str) -> str:
    """The quant type named in a repo file's path ("Q4_K_M"), else "unknown".

    The file name is searched first (its last match wins), then the folders from the
    innermost out, since some repos keep shards in folders named after the quant.
    """
    parts = PurePosixPath(path).parts
    for part in reversed(parts):
        matches = _QUANT_RE.findall(part)
        if matches:
            quant = str(matches[-1]).upper()
            return _QUANT_ALIASES.get(quant, quant)
    return "unknown"


def is_projector_file(path: str) -> bool:
    """A vision projector (mmproj) file, listed but never a chat model by itself."""
    return "mmproj" in PurePosixPath(path).name.lower()


def group_quant_options(files: Sequence[HubFile]) -> tuple[QuantOption, ...]:
    """GGUF files grouped into options: split shards together, in order.

    Chat models come first, smallest first; projectors last.
    """
    groups: dict[str, list[tuple[int, HubFile]]] = {}
    for hub_file in files:
        match = _SPLIT_RE.search(hub_file.path)
        key = hub_file.path[: match.start()] if match else hub_file.path
        groups.setdefault(key, []).append((int(match.group(1)) if match else 0, hub_file))
    options = []
    for members in groups.values():
        shards = tuple(f for _, f in sorted(members, key=lambda m: m[0]))
        first = shards[0].path
        options.append(
            QuantOption(
                quant=quant_of(first),
                files=shards,
                size_bytes=sum(f.size for f in shards),
                is_split=len(shards) > 1 or bool(_SPLIT_RE.search(first)),
                is_projector=is_projector_file(first),
            )
        )
    options.sort(key=lambda o: (o.is_projector, o.size_bytes, o.files[0].path))
    return tuple(options)


def memory_for_file(size_bytes: int) -> int:
    """Rough memory to run a model file whose header we do not have: size x 1.1 + 300 MB.

    The 10 % covers the KV cache and buffers at a modest context; the 300 MB llama.cpp's
    own overhead. The library's header-based estimate replaces it once downloaded.
    """
    return int(size_bytes * 1.1) + 300_000_000


def fit_badge(size_bytes: int, ram_available: int, vram_free: Sequence[int] = ()) -> str:
    """ "fits", "tight", "too_big" (or "unknown") for a model file of `size_bytes` here.

    The need is `memory_for_file`; the verdict is the library's `fit_verdict` (fits up to
    80 % of available RAM plus free VRAM, tight up to 100 %).
    """
    return fit_verdict(memory_for_file(size_bytes), ram_available, vram_free)


def save_token(token: str) -> None:
    """Store an access token where huggingface_hub reads it (`HF_TOKEN_PATH`, owner-only).

    `huggingface_hub.login` would first check the token against the default Hub
    (`whoami`), which fails offline and ignores a custom endpoint; the token is instead
    written to the same file `login` writes, and the next Hub call checks it.
    """
    token = token.strip()
    if not token or any(c.isspace() for c in token):
        raise HubAuthError("That is not an access token: it is empty or has spaces in it.")
    path = Path(constants.HF_TOKEN_PATH)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(token)
        with contextlib.suppress(OSError, NotImplementedError):
            path.chmod(0o600)
    except OSError as exc:
        raise HubError(f"Could not save the token to {path}: {exc.strerror or exc}.") from exc
    if os.environ.get("HF_TOKEN"):
        log.warning("HF_TOKEN is set and takes precedence over the token saved in %s", path)


def stored_token() -> str | None:
    """The token huggingface_hub would use (`HF_TOKEN`, else `$HF_HOME/token`), or None."""
    return huggingface_hub.get_token()


@contextlib.contextmanager
def hub_errors(
    endpoint: str,
    *,
    repo_id: str | None = None,
    filename: str | None = None,
    revision: str | None = None,
) -> Iterator[None]:
    """Turn huggingface_hub's and the network's exceptions into `HubError` subclasses."""
    try:
        yield
    except HubError:
        raise
    except OfflineModeIsEnabled as exc:
        raise HubOfflineError(
            "Hub access is switched off (HF_HUB_OFFLINE is set). Unset HF_HUB_OFFLINE to "
            "search and download models."
        ) from exc
    except (httpx2.ConnectError, httpx2.TimeoutException, httpx2.NetworkError) as exc:
        raise HubOfflineError(
            f"Cannot reach the Hugging Face Hub at {endpoint} ({_reason(exc)}). Check the "
            "internet connection (or HF_ENDPOINT) and try again."
        ) from exc
    except HfGatedRepoError as exc:
        repo = repo_id or getattr(exc, "repo_id", None) or "This repo"
        raise GatedRepoError(gated_message(endpoint, repo), repo_id=repo) from exc
    except RevisionNotFoundError as exc:
        raise RepoNotFoundError(
            f"{repo_id} has no revision '{revision}' on the Hub ({endpoint})."
        ) from exc
    except EntryNotFoundError as exc:
        at = f" at revision {revision}" if revision else ""
        raise HubFileNotFoundError(
            f"{repo_id} has no file '{filename}'{at} on the Hub. Pick another file or quant."
        ) from exc
    except DisabledRepoError as exc:
        raise RepoNotFoundError(f"{repo_id} is disabled on the Hub ({endpoint}).") from exc
    except RepositoryNotFoundError as exc:
        raise RepoNotFoundError(
            f"No model repo '{repo_id}' on the Hub ({endpoint}). Check the name (owner/name); "
            "if the repo is private, add an access token that can read it."
        ) from exc
    except HfHubHTTPError as exc:
        status = exc.response.status_code if exc.response is not None else 0
        said = exc.server_message or ""
        if status in (401, 403):
            raise HubAuthError(
                f"The Hub refused the access token ({status}{': ' + said if said else ''}). "
                f"Create a token with read access at {endpoint}/settings/tokens and enter it "
                "again."
            ) from exc
        raise HubError(
            f"The Hub answered {status or 'an error'} for {repo_id or endpoint}"
            f"{': ' + _one_line(said) if said else ''}. Try again later."
        ) from exc
    except HFValidationError as exc:
        raise HubError(
            f"'{repo_id}' is not a valid repo name: use owner/name, e.g. "
            "bartowski/Llama-3.2-3B-Instruct-GGUF."
        ) from exc
    except httpx2.HTTPError as exc:
        raise HubError(f"Talking to the Hub at {endpoint} failed: {_reason(exc)}.") from exc


def gated_message(endpoint: str, repo_id: str) -> str:
    """What to do about a gated repo: accept the licence on its page, then give a token."""
    return (
        f"{repo_id} is gated: open {endpoint.rstrip('/')}/{repo_id}, sign in and accept its "
        "licence, then enter a Hugging Face access token (read access) and try again."
    )


def _hub_model(info: Any) -> HubModel:
    gguf = info.gguf or {}
    config = info.config or {}
    safetensors = info.safetensors
    n_params = gguf.get("total") or (safetensors.total if safetensors else 0) or 0
    card = info.card_data
    licence = card.get("license") if card is not None else None
    tags = tuple(info.tags or ())
    if not licence:
        licence = next((t.split(":", 1)[1] for t in tags if t.startswith("license:")), None)
    last_modified = info.last_modified.isoformat() if info.last_modified else None
    return HubModel(
        repo_id=info.id,
        author=info.author or info.id.split("/")[0],
        downloads=int(info.downloads or 0),
        likes=int(info.likes or 0),
        last_modified=last_modified,
        gated=info.gated or False,
        n_params=int(n_params),
        architecture=str(gguf.get("architecture") or config.get("model_type") or ""),
        licence=str(licence) if licence else None,
        pipeline_tag=info.pipeline_tag,
        tags=tags,
    )


def _reason(exc: BaseException) -> str:
    text = _one_line(str(exc))
    return text or type(exc).__name__


def _one_line(text: str) -> str:
    return " ".join(text.split())[:300]
