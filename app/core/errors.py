"""Typed errors with messages a person can act on: what, which file, what to do."""

from __future__ import annotations

from pathlib import Path


class HearthError(Exception):
    """Base of every error Hearth expects and explains to the person."""

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = Path(path) if path is not None else None

    def __str__(self) -> str:
        return self.message


class ModelFileError(HearthError):
    """A model file is missing, unreadable, corrupt or not a GGUF."""


class UnsupportedModelError(ModelFileError):
    """A well-formed GGUF this build of llama.cpp cannot run."""


class InsufficientMemoryError(HearthError):
    """The model (with its context) needs more memory than the machine has."""

    def __init__(
        self, message: str, *, path: Path | str | None = None, needed: int = 0, available: int = 0
    ) -> None:
        super().__init__(message, path=path)
        self.needed = needed
        self.available = available


class ModelLoadError(HearthError):
    """llama.cpp refused to load a model or create its context."""


class EngineCrashedError(ModelLoadError):
    """llama.cpp ended the engine host (an abort, a segfault) while it loaded or replied.

    The app lives on; the model is gone and loads again on request. `reason` is what killed
    the host and llama.cpp's last line; `during` what it was doing.
    """

    def __init__(
        self, message: str, *, path: Path | str | None = None, reason: str = "", during: str = ""
    ) -> None:
        super().__init__(message, path=path)
        self.reason = reason
        self.during = during


class LoadCancelled(HearthError):
    """The person cancelled loading a model. Not a failure."""


class EngineStateError(HearthError):
    """An engine call that needs a loaded model was made without one."""


class ContextOverflowError(HearthError):
    """The conversation plus the reply budget does not fit the context window."""

    def __init__(self, message: str, *, needed: int, limit: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.limit = limit


class InvalidSettingError(HearthError, ValueError):
    """A sampler or load setting is outside its valid range."""


class StarterModelError(HearthError):
    """The starter model could not be fetched or unpacked."""


class ChatTemplateError(HearthError):
    """The model's own chat template failed to render these messages.

    `model` names the model; `fallback_helps` is True when the plain transcript format
    (`ChatTemplate.fallback()`) would render these messages instead.
    """

    def __init__(self, message: str, *, model: str = "", fallback_helps: bool = True) -> None:
        super().__init__(message)
        self.model = model
        self.fallback_helps = fallback_helps


class PromptCancelled(HearthError):
    """The reply was stopped while its prompt was still being prepared."""


class StoreError(HearthError):
    """The database cannot be opened, read or upgraded."""


class RecordNotFoundError(StoreError, LookupError):
    """A conversation, message or preset id that is not (or no longer) in the store."""


class InvalidPresetNameError(StoreError, ValueError):
    """A preset name that is empty or taken by a built-in preset."""


class StorageFullError(HearthError):
    """The disk (or the quota) holding a Hearth folder is full: nothing more can be saved.

    Whatever failed to save is still with the caller; `path` names the full folder.
    """


class DatabaseDamagedError(StoreError):
    """The database file is damaged (a bad page, not SQLite): `hearth repair` recovers it."""


class ReadOnlyStorageError(HearthError):
    """A Hearth folder or file cannot be written (read-only disk or no permission).

    Reading still works: open the store with `read_only=True`.
    """


class RemoteError(HearthError):
    """A remote OpenAI-compatible server could not be reached or refused a request.

    `endpoint` is the base URL it concerns.
    """

    def __init__(self, message: str, *, endpoint: str = "") -> None:
        super().__init__(message)
        self.endpoint = endpoint


class RemoteUnreachableError(RemoteError):
    """Nothing answers at the endpoint's address (refused, no route, connect timeout)."""


class RemoteDNSError(RemoteUnreachableError):
    """The endpoint's host name does not resolve."""


class RemoteTLSError(RemoteError):
    """The TLS handshake failed; `problem` names the certificate problem."""

    def __init__(self, message: str, *, endpoint: str = "", problem: str = "") -> None:
        super().__init__(message, endpoint=endpoint)
        self.problem = problem


class RemoteAuthError(RemoteError):
    """The server refused the API key (401) or the key may not do this (403)."""

    def __init__(self, message: str, *, endpoint: str = "", status: int = 401) -> None:
        super().__init__(message, endpoint=endpoint)
        self.status = status


class RemoteModelNotFoundError(RemoteError):
    """The server does not serve the model asked for (404)."""


class RemoteRateLimitError(RemoteError):
    """The server asks to slow down (429); `retry_after` in seconds when it said."""

    def __init__(
        self, message: str, *, endpoint: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message, endpoint=endpoint)
        self.retry_after = retry_after


class RemoteServerError(RemoteError):
    """The server failed (5xx) or answered with something that is not the API (`status`)."""

    def __init__(self, message: str, *, endpoint: str = "", status: int = 0) -> None:
        super().__init__(message, endpoint=endpoint)
        self.status = status


class RemoteRequestError(RemoteServerError):
    """The server refused the request itself (400/422: a value it does not accept, a
    prompt longer than its context)."""


class RemoteTimeoutError(RemoteError):
    """The server accepted the request but sent nothing before the time limit."""


class RemoteStreamCutError(RemoteError):
    """The connection broke before the reply's first token (after it, the partial reply is
    kept and ends as interrupted instead)."""


class ConnectionSettingsError(HearthError):
    """A saved connection (name, URL, key, CA bundle) is missing or not valid."""
