"""HTTP to an OpenAI-compatible server: the endpoint, its client, and its errors explained.

`Endpoint` is what a person configured (a base URL, an optional key and CA bundle). Every
request to it goes through `open_client` (TLS verification always on, no proxy from the
environment: Hearth connects to the configured address and nowhere else) and every failure
becomes a `RemoteError` subclass whose message names the server and what to do.
"""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:  # httpx loads with the first request, not with the app
    import httpx

from app.core.errors import (
    ConnectionSettingsError,
    RemoteAuthError,
    RemoteDNSError,
    RemoteError,
    RemoteModelNotFoundError,
    RemoteRateLimitError,
    RemoteRequestError,
    RemoteServerError,
    RemoteTimeoutError,
    RemoteTLSError,
    RemoteUnreachableError,
)

CONNECT_TIMEOUT_S = 10.0
FIRST_TOKEN_TIMEOUT_S = 120.0
"""How long a server may stay silent (before the first token, or between two chunks)."""


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible server as configured: where, with which key and CA bundle.

    `base_url` is normalised: no trailing slash, and `/v1` added when the URL has no path
    (`http://host:8080` means `http://host:8080/v1`). `name` is used in messages.
    """

    base_url: str
    api_key: str | None = field(default=None, repr=False)
    ca_bundle: Path | None = None
    name: str = ""
    connect_timeout_s: float = CONNECT_TIMEOUT_S
    read_timeout_s: float = FIRST_TOKEN_TIMEOUT_S

    def __post_init__(self) -> None:
        object.__setattr__(self, "base_url", normalise_url(self.base_url))
        if not self.name:
            object.__setattr__(self, "name", self.host)

    @property
    def host(self) -> str:
        """host:port of the server."""
        parts = urlsplit(self.base_url)
        return parts.netloc.rpartition("@")[2]

    @property
    def root(self) -> str:
        """The server's root URL (the base URL without its `/v1`), for `/tokenize`."""
        return self.base_url.removesuffix("/v1")

    @property
    def label(self) -> str:
        """How messages name it: "name (url)"."""
        return f"{self.name} ({self.base_url})" if self.name != self.host else self.base_url


def normalise_url(url: str) -> str:
    """A base URL checked and tidied: http(s), a host, no trailing slash, `/v1` by default.

    Raises:
        ConnectionSettingsError: Not an http(s) URL with a host.
    """
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConnectionSettingsError(
            f"{text!r} is not a server address: use a URL such as http://gpu-box:8000/v1 "
            "(http or https, a host name, optionally a port and path)."
        )
    if parts.query or parts.fragment:
        raise ConnectionSettingsError(
            f"{text!r} has a query or fragment; give only the base URL, such as "
            "https://gpu-box:8000/v1."
        )
    path = parts.path.rstrip("/") or "/v1"
    return f"{parts.scheme}://{parts.netloc}{path}"


def _tls_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """Certificates verified against the system's CAs (plus certifi's), and `ca_bundle`."""
    context = ssl.create_default_context()
    try:
        import certifi

        context.load_verify_locations(certifi.where())
    except (ImportError, OSError):
        pass
    if ca_bundle is not None:
        try:
            context.load_verify_locations(cafile=str(ca_bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ConnectionSettingsError(
                f"The CA bundle {ca_bundle} cannot be read as PEM certificates ({exc}). "
                "Choose the server's CA certificate file (.pem or .crt)."
            ) from None
    return context


def open_client(endpoint: Endpoint, *, keep_alive: bool = True) -> httpx.Client:
    """An httpx client for `endpoint`: its key, verified TLS, its timeouts, no env proxies.

    `keep_alive` False: every request opens (and its end closes) its own connection.
    """
    import httpx

    headers = {"Accept": "application/json"}
    if endpoint.api_key:
        headers["Authorization"] = f"Bearer {endpoint.api_key}"
    verify: ssl.SSLContext | bool = (
        _tls_context(endpoint.ca_bundle) if endpoint.base_url.startswith("https:") else True
    )
    return httpx.Client(
        base_url=endpoint.base_url,
        headers=headers,
        verify=verify,
        trust_env=False,  # no proxy or netrc from the environment: only this address
        timeout=httpx.Timeout(
            endpoint.read_timeout_s, connect=endpoint.connect_timeout_s, pool=5.0
        ),
        follow_redirects=False,
        limits=httpx.Limits() if keep_alive else httpx.Limits(max_keepalive_connections=0),
    )


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def transport_error(exc: httpx.TransportError, endpoint: Endpoint) -> RemoteError:
    """The `RemoteError` for a failure below HTTP: DNS, refused, TLS, timeouts."""
    import httpx

    where = endpoint.label
    url = endpoint.base_url
    for cause in _chain(exc):
        if isinstance(cause, ssl.SSLCertVerificationError):
            problem = cause.verify_message or str(cause.reason or cause)
            return RemoteTLSError(
                f"{where}: the server's TLS certificate was refused: {problem}. If the server "
                "uses its own certificate authority, set that CA's certificate file as the "
                "connection's CA bundle (Hearth never turns verification off).",
                endpoint=url,
                problem=problem,
            )
        if isinstance(cause, ssl.SSLError):
            problem = cause.reason or str(cause)
            return RemoteTLSError(
                f"{where}: the TLS handshake failed ({problem}). Check that the address "
                "uses https only if the server speaks TLS on that port.",
                endpoint=url,
                problem=str(problem),
            )
        if isinstance(cause, socket.gaierror):
            return RemoteDNSError(
                f"{where}: the host name {urlsplit(url).hostname!r} does not resolve (DNS: "
                f"{cause.strerror or cause}). Check the spelling of the address and the "
                "network.",
                endpoint=url,
            )
        if isinstance(cause, ConnectionRefusedError):
            return RemoteUnreachableError(
                f"{where}: nothing is listening at {endpoint.host} (connection refused). "
                "Start the server, or check the port.",
                endpoint=url,
            )
    if isinstance(exc, httpx.ConnectTimeout):
        return RemoteUnreachableError(
            f"{where}: no answer from {endpoint.host} within {endpoint.connect_timeout_s:g} s "
            "(connect timeout). Check that the machine is on and reachable from here.",
            endpoint=url,
        )
    if isinstance(exc, httpx.ReadTimeout):
        return RemoteTimeoutError(
            f"{where}: the server accepted the request but sent nothing for "
            f"{endpoint.read_timeout_s:g} s. It may be overloaded or stuck; try again, or "
            "check the server's log.",
            endpoint=url,
        )
    if isinstance(exc, httpx.ConnectError):
        return RemoteUnreachableError(
            f"{where}: cannot connect to {endpoint.host} ({exc}). Check the address and "
            "that the server is running.",
            endpoint=url,
        )
    return RemoteUnreachableError(
        f"{where}: the connection failed ({type(exc).__name__}: {exc}).", endpoint=url
    )


def server_message(response: httpx.Response) -> str:
    """The error text a server put in its body (OpenAI's `{"error": {"message"}}` and
    the common variants), or the start of the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:300]
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict):
            for key in ("message", "detail", "msg"):
                if isinstance(error.get(key), str):
                    return str(error[key])
            if isinstance(body.get("detail"), list | str):
                return str(body["detail"])[:300]
        elif isinstance(error, str):
            return error
    return str(body)[:300]


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


def status_error(response: httpx.Response, endpoint: Endpoint, model: str = "") -> RemoteError:
    """The `RemoteError` for an HTTP error status (call with the body read)."""
    status = response.status_code
    said = server_message(response)
    where = endpoint.label
    url = endpoint.base_url
    if status in (401, 403):
        what = (
            "refused the API key (401)"
            if status == 401
            else "does not allow this key to do this (403)"
        )
        hint = (
            "Set the key in Model → Connections…"
            if endpoint.api_key
            else "This server needs an API key: add it to the connection."
        )
        return RemoteAuthError(f"{where} {what}: {said}. {hint}", endpoint=url, status=status)
    if status == 404:
        if model and ("model" in said.lower() or "model_not_found" in response.text):
            return RemoteModelNotFoundError(
                f"{where} does not serve the model {model!r} ({said}). Pick one of the "
                "models the connection lists (Model → Connections… → Test).",
                endpoint=url,
            )
        return RemoteServerError(
            f"{where}: {response.request.url.path} was not found (404). Check the base URL "
            "(OpenAI-compatible servers usually end in /v1).",
            endpoint=url,
            status=status,
        )
    if status == 429:
        after = _retry_after(response)
        wait = f" It asks to wait {after:.0f} s before trying again." if after is not None else ""
        return RemoteRateLimitError(
            f"{where} is rate-limiting requests (429: {said}).{wait}",
            endpoint=url,
            retry_after=after,
        )
    if status >= 500:
        return RemoteServerError(
            f"{where} failed with HTTP {status}: {said or response.reason_phrase}. The fault "
            "is on the server; its log says more.",
            endpoint=url,
            status=status,
        )
    return RemoteRequestError(
        f"{where} refused the request (HTTP {status}): {said or response.reason_phrase}",
        endpoint=url,
        status=status,
    )


@contextmanager
def explained(endpoint: Endpoint) -> Iterator[None]:
    """Turn transport errors inside the block into `RemoteError`s."""
    import httpx

    try:
        yield
    except httpx.TransportError as exc:
        raise transport_error(exc, endpoint) from None


def get_json(
    client: httpx.Client, endpoint: Endpoint, path: str, model: str = ""
) -> dict[str, Any]:
    """GET `path` (relative to the base URL) as a JSON object, errors explained."""
    with explained(endpoint):
        response = client.get(path)
    return _json_object(response, endpoint, model)


def _json_object(response: httpx.Response, endpoint: Endpoint, model: str = "") -> dict[str, Any]:
    if response.status_code >= 400:
        raise status_error(response, endpoint, model)
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise RemoteServerError(
            f"{endpoint.label} answered {response.request.url.path} with something that is "
            "not OpenAI-compatible JSON. Check the base URL.",
            endpoint=endpoint.base_url,
            status=response.status_code,
        )
    return body
