"""A fake Hugging Face Hub on 127.0.0.1 for the real `huggingface_hub` client.

It serves what huggingface_hub 2.4 parses (read from its sources: `hf_raise_for_status`,
`get_hf_file_metadata`, `HfApi.list_models` / `model_info` / `list_repo_tree`):

- GET /api/models?search=&filter=&sort=&direction=&limit=&expand=|expand[]=|full=
- GET /api/models/{repo}[/revision/{rev}][?blobs=true]
- GET /api/models/{repo}/tree/{rev}[/{path}][?recursive=true]
- GET /api/whoami-v2
- HEAD/GET /{repo}/resolve/{rev}/{file} (README.md too: `FakeRepo.set_card`): X-Repo-Commit,
  ETag, X-Linked-Etag, X-Linked-Size, Content-Length, Accept-Ranges, Range -> 206 +
  Content-Range; gated repos answer 401/403
  with X-Error-Code GatedRepo; unknown repos/files 404 with RepoNotFound/EntryNotFound.
- GET /cdn/{sha256}: the bytes behind a redirect, on another origin (http://localhost:PORT)
  like the real Hub's CDN, so the Authorization header does not follow.

Fault knobs (`FakeHub.faults`): drop the connection after N body bytes (once, or one
response after another), stall (send N bytes, then nothing), corrupt a byte (same size),
ignore Range, redirect resolve to the CDN, throttle. Every request is
logged in `FakeHub.requests`.

    python -m tests.fake_hub --size-mb 150   # serve one repo with a random file; prints its URL
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

SEND_PIECE = 1 << 20


@dataclass
class FakeFile:
    """A file in a fake repo (stored in LFS unless `lfs=False`)."""

    path: str
    data: bytes
    lfs: bool = True
    source: Path | None = None  # the same bytes on disk: served with sendfile (zero-copy)

    @cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @cached_property
    def git_oid(self) -> str:
        header = f"blob {len(self.data)}\0".encode()
        return hashlib.sha1(header + self.data, usedforsecurity=False).hexdigest()

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_oid


@dataclass
class FakeRepo:
    """A model repo: files at one commit, plus what search and model_info report."""

    repo_id: str
    files: dict[str, FakeFile] = field(default_factory=dict)
    sha: str = ""
    gated: bool | str = False
    private: bool = False
    downloads: int = 0
    likes: int = 0
    trending: int = 0
    last_modified: str = "2024-06-01T12:00:00.000Z"
    created_at: str = "2024-05-01T12:00:00.000Z"
    tags: list[str] = field(default_factory=lambda: ["gguf"])
    pipeline_tag: str | None = "text-generation"
    gguf: dict[str, Any] | None = None
    card_data: dict[str, Any] | None = None
    safetensors: dict[str, Any] | None = None
    config: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.sha:
            self.sha = hashlib.sha1(self.repo_id.encode(), usedforsecurity=False).hexdigest()

    def add(self, path: str, data: bytes, *, lfs: bool = True) -> FakeFile:
        self.files[path] = FakeFile(path, data, lfs)
        return self.files[path]

    def set_card(self, markdown: str) -> FakeFile:
        """Give the repo a model card: README.md (a plain git file), served by resolve."""
        return self.add("README.md", markdown.encode("utf-8"), lfs=False)

    def summary(self, expand: list[str] | None, full: bool) -> dict[str, Any]:
        everything = {
            "author": self.repo_id.split("/")[0],
            "downloads": self.downloads,
            "likes": self.likes,
            "trendingScore": self.trending,
            "lastModified": self.last_modified,
            "createdAt": self.created_at,
            "gated": self.gated,
            "private": self.private,
            "tags": self.tags,
            "pipeline_tag": self.pipeline_tag,
            "library_name": "gguf",
            "sha": self.sha,
            "gguf": self.gguf,
            "cardData": self.card_data,
            "safetensors": self.safetensors,
            "config": self.config,
            "siblings": [{"rfilename": p} for p in sorted(self.files)],
        }
        base = {"_id": self.sha[:24], "id": self.repo_id}
        if expand:
            return {**base, **{k: everything[k] for k in expand if everything.get(k) is not None}}
        default = ("likes", "trendingScore", "private", "downloads", "tags", "pipeline_tag")
        keys = list(everything) if full else [*default, "library_name", "createdAt"]
        return {
            **base,
            "modelId": self.repo_id,
            **{k: everything[k] for k in keys if everything.get(k) is not None},
        }


@dataclass
class Faults:
    """Fault injection, read on every request; set fields from the test."""

    drop_after: int | None = None  # close the connection after this many body bytes (once)
    drops: list[int] = field(default_factory=list)  # drop_after for the next responses, in turn
    stall_after: int | None = None  # send this many body bytes then go silent (once)
    stall_s: float = 60.0  # how long a stall lasts before the server closes the connection
    corrupt: bool = False  # flip one byte in the middle of every file body
    ignore_range: bool = False  # answer 200 with the whole file even when asked for a Range
    redirect: bool = False  # resolve -> 302 to the CDN origin (http://localhost:PORT/cdn/...)
    throttle_bps: float | None = None  # send at most this many bytes per second
    fail_status: int | None = None  # answer every request with this status (e.g. 500)


@dataclass
class RequestLog:
    """One request as the server saw it."""

    method: str
    path: str
    range: str | None
    authorization: str | None
    status: int = 0
    body_bytes: int = 0


class FakeHub:
    """The server: `start()`, add repos, point the client at `url`, `stop()`."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.tokens: dict[str, set[str]] = {}  # token -> gated repos it may read
        self.faults = Faults()
        self.requests: list[RequestLog] = []
        self._lock = threading.Lock()
        self.stopping = threading.Event()  # ends stalls when the hub stops
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- setup -----------------------------------------------------------------------
    def add_repo(self, repo_id: str, **fields: Any) -> FakeRepo:
        repo = FakeRepo(repo_id, **fields)
        self.repos[repo_id] = repo
        return repo

    def allow(self, token: str, *repo_ids: str) -> None:
        """Make `token` a valid token that may read these gated repos."""
        self.tokens.setdefault(token, set()).update(repo_ids)

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cdn_url(self) -> str:
        return f"http://localhost:{self.port}"

    def start(self) -> FakeHub:
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-hub",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def log(self, entry: RequestLog) -> None:
        with self._lock:
            self.requests.append(entry)

    def downloads_of(self, filename: str) -> list[RequestLog]:
        """The GET requests that carried the bytes of a file (resolve or CDN)."""
        with self._lock:
            return [
                r
                for r in self.requests
                if r.method == "GET"
                and r.status in (200, 206)
                and (r.path.endswith("/" + quote(filename)) or r.path.startswith("/cdn/"))
            ]

    def take_drop(self) -> int | None:
        with self._lock:
            drop, self.faults.drop_after = self.faults.drop_after, None
            if drop is None and self.faults.drops:
                drop = self.faults.drops.pop(0)
            return drop

    def take_stall(self) -> int | None:
        with self._lock:
            stall, self.faults.stall_after = self.faults.stall_after, None
            return stall


class _Handler(BaseHTTPRequestHandler):
    hub: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -- dispatch --------------------------------------------------------------------
    def do_HEAD(self) -> None:
        self._dispatch(head=True)

    def do_GET(self) -> None:
        self._dispatch(head=False)

    def _dispatch(self, *, head: bool) -> None:
        split = urlsplit(self.path)
        path = unquote(split.path)
        query = parse_qs(split.query)
        self.entry = RequestLog(
            self.command, split.path, self.headers.get("Range"), self.headers.get("Authorization")
        )
        self.hub.log(self.entry)
        try:
            if self.hub.faults.fail_status:
                self._error(self.hub.faults.fail_status, None, "Server failure")
            elif path in ("", "/"):
                self._json({"ok": True}, head=head)
            elif path == "/api/whoami-v2":
                self._whoami()
            elif path == "/api/models":
                self._search(query, head=head)
            elif path.startswith("/api/models/"):
                self._model_api(path[len("/api/models/") :], query)
            elif path.startswith("/cdn/"):
                self._cdn(path[len("/cdn/") :], query, head=head)
            elif "/resolve/" in path:
                self._resolve(path.lstrip("/"), head=head)
            else:
                self._error(404, None, "Not found")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    # -- API -------------------------------------------------------------------------
    def _search(self, query: dict[str, list[str]], *, head: bool) -> None:
        repos = [r for r in self.hub.repos.values() if not r.private]
        if search := query.get("search", [""])[0].lower():
            repos = [r for r in repos if search in r.repo_id.lower()]
        for tag in query.get("filter", []):
            repos = [r for r in repos if tag in r.tags]
        sort = query.get("sort", [None])[0]
        keys = {
            "downloads": lambda r: r.downloads,
            "likes": lambda r: r.likes,
            "trendingScore": lambda r: r.trending,
            "lastModified": lambda r: r.last_modified,
            "createdAt": lambda r: r.created_at,
        }
        if sort is not None:
            if sort not in keys:
                self._error(400, None, f"Invalid sort {sort}")
                return
            descending = query.get("direction", ["-1"])[0] == "-1"
            repos.sort(key=keys[sort], reverse=descending)
        if limit := query.get("limit"):
            repos = repos[: int(limit[0])]
        expand = query.get("expand", []) + query.get("expand[]", [])
        full = query.get("full", ["false"])[0].lower() == "true"
        self._json([r.summary(expand or None, full) for r in repos], head=head)

    def _model_api(self, rest: str, query: dict[str, list[str]]) -> None:
        parts = rest.split("/")
        repo_id = "/".join(parts[:2])
        repo = self._visible_repo(repo_id)
        if repo is None:
            return
        tail = parts[2:]
        if not tail or tail[0] == "revision":
            if tail and tail[1] not in ("main", repo.sha):
                self._error(404, "RevisionNotFound", f"Invalid rev id: {tail[1]}")
                return
            blobs = query.get("blobs", ["false"])[0].lower() == "true"
            info = repo.summary(None, full=True)
            info["siblings"] = [self._sibling(f, blobs) for _, f in sorted(repo.files.items())]
            self._json(info)
        elif tail[0] == "tree":
            if tail[1] not in ("main", repo.sha):
                self._error(404, "RevisionNotFound", f"Invalid rev id: {tail[1]}")
                return
            prefix = "/".join(tail[2:])
            recursive = query.get("recursive", ["false"])[0].lower() == "true"
            self._json(self._tree(repo, prefix, recursive))
        else:
            self._error(404, None, "Not found")

    @staticmethod
    def _sibling(file: FakeFile, blobs: bool) -> dict[str, Any]:
        entry: dict[str, Any] = {"rfilename": file.path}
        if blobs:
            entry.update(size=len(file.data), blobId=file.git_oid)
            if file.lfs:
                entry["lfs"] = {"sha256": file.sha256, "size": len(file.data), "pointerSize": 134}
        return entry

    @staticmethod
    def _tree(repo: FakeRepo, prefix: str, recursive: bool) -> list[dict[str, Any]]:
        entries: dict[str, dict[str, Any]] = {}
        base = prefix.rstrip("/") + "/" if prefix else ""
        for path, file in sorted(repo.files.items()):
            if not path.startswith(base):
                continue
            rest = path[len(base) :].split("/")
            for depth in range(1, len(rest)):
                folder = base + "/".join(rest[:depth])
                if recursive or depth == 1:
                    entries.setdefault(
                        folder, {"type": "directory", "oid": "0" * 40, "size": 0, "path": folder}
                    )
            if recursive or len(rest) == 1:
                entry: dict[str, Any] = {
                    "type": "file",
                    "oid": file.git_oid,
                    "size": len(file.data),
                    "path": path,
                }
                if file.lfs:
                    entry["lfs"] = {"oid": file.sha256, "size": len(file.data), "pointerSize": 134}
                entries[path] = entry
        return list(entries.values())

    def _whoami(self) -> None:
        token = self._token()
        if token is None or token not in self.hub.tokens:
            self._error(401, None, "Invalid credentials in Authorization header")
            return
        self._json({"type": "user", "name": "tester", "auth": {"accessToken": {"role": "read"}}})

    # -- files -----------------------------------------------------------------------
    def _resolve(self, rest: str, *, head: bool) -> None:
        owner, name, _resolve, revision, *file_parts = rest.split("/")
        repo = self._visible_repo(f"{owner}/{name}")
        if repo is None:
            return
        if revision not in ("main", repo.sha):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return
        if repo.gated and not self._may_read_gated(repo):
            return
        file = repo.files.get("/".join(file_parts))
        if file is None:
            self._error(404, "EntryNotFound", f"{'/'.join(file_parts)} does not exist")
            return
        common = {
            "X-Repo-Commit": repo.sha,
            "X-Linked-Etag": f'"{file.etag}"',
            "X-Linked-Size": str(len(file.data)),
        }
        if self.hub.faults.redirect:
            location = f"{self.hub.cdn_url}/cdn/{file.sha256}?repo={quote(repo.repo_id)}"
            self._send(302, {**common, "ETag": f'"{file.git_oid}"', "Location": location}, b"")
            return
        self._serve_bytes(file, {**common, "ETag": f'"{file.etag}"'}, head=head)

    def _cdn(self, sha: str, query: dict[str, list[str]], *, head: bool) -> None:
        repo = self.hub.repos.get(query.get("repo", [""])[0])
        file = next((f for f in (repo.files.values() if repo else ()) if f.sha256 == sha), None)
        if file is None:
            self._error(404, None, "No such object")
            return
        self._serve_bytes(file, {"ETag": f'"{file.sha256}"'}, head=head)

    def _serve_bytes(self, file: FakeFile, headers: dict[str, str], *, head: bool) -> None:
        data = file.data
        if self.hub.faults.corrupt and not head:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1 :]
        start = 0
        wanted = self.headers.get("Range")
        status = 200
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if wanted and not self.hub.faults.ignore_range and not head:
            first, _, last = wanted.removeprefix("bytes=").partition("-")
            start = int(first)
            end = int(last) if last else len(data) - 1
            if start >= len(data):
                self._send(416, {"Content-Range": f"bytes */{len(data)}"}, b"")
                return
            data = data[start : end + 1]
            status = 206
            headers["Content-Range"] = f"bytes {start}-{start + len(data) - 1}/{len(file.data)}"
        headers["Content-Length"] = str(len(data))
        self.entry.status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        if head:
            return
        drop = self.hub.take_drop()
        stall = self.hub.take_stall() if drop is None else None
        if stall is not None:
            self._stall(memoryview(data), stall)
            return
        faults = self.hub.faults
        if file.source is not None and drop is None and not (faults.throttle_bps or faults.corrupt):
            with open(file.source, "rb") as source:
                sent = self.connection.sendfile(source, offset=start, count=len(data))
            self.entry.body_bytes = sent
            return
        self._write_body(memoryview(data), drop)

    def _stall(self, body: memoryview, after: int) -> None:
        """Send `after` bytes, then nothing until `stall_s` passes or the hub stops."""
        sent = min(after, len(body))
        self.wfile.write(body[:sent])
        self.wfile.flush()
        self.entry.body_bytes = sent
        self.hub.stopping.wait(self.hub.faults.stall_s)
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def _write_body(self, body: memoryview, drop: int | None) -> None:
        limit = len(body) if drop is None else min(drop, len(body))
        throttle = self.hub.faults.throttle_bps
        piece = SEND_PIECE if throttle is None else max(1024, int(throttle / 50))
        sent = 0
        started = time.monotonic()
        while sent < limit:
            n = min(piece, limit - sent)
            self.wfile.write(body[sent : sent + n])
            sent += n
            self.entry.body_bytes = sent
            if throttle:
                ahead = sent / throttle - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        if drop is not None and sent < len(body):
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True

    # -- helpers ---------------------------------------------------------------------
    def _token(self) -> str | None:
        value = self.headers.get("Authorization") or ""
        return value.removeprefix("Bearer ").strip() or None

    def _visible_repo(self, repo_id: str) -> FakeRepo | None:
        repo = self.hub.repos.get(repo_id)
        token = self._token()
        if token is not None and token not in self.hub.tokens:
            self._error(401, None, "Invalid credentials in Authorization header")
            return None
        if repo is None or (repo.private and repo_id not in self.hub.tokens.get(token or "", ())):
            self._error(401 if token is None else 404, "RepoNotFound", "Repository not found")
            return None
        return repo

    def _may_read_gated(self, repo: FakeRepo) -> bool:
        token = self._token()
        if token is None:
            self._error(
                401,
                "GatedRepo",
                f"Access to model {repo.repo_id} is restricted. You must have access to it "
                "and be authenticated to access it. Please log in.",
            )
            return False
        if repo.repo_id not in self.hub.tokens.get(token, ()):
            self._error(
                403,
                "GatedRepo",
                f"Access to model {repo.repo_id} is restricted and you are not in the "
                "authorized list. Visit the repo page to ask for access.",
            )
            return False
        return True

    def _json(self, payload: Any, *, head: bool = False) -> None:
        body = json.dumps(payload).encode()
        self._send(200, {"Content-Type": "application/json"}, body, head=head)

    def _error(self, status: int, code: str | None, message: str) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, headers, json.dumps({"error": message}).encode())

    def _send(
        self, status: int, headers: dict[str, str], body: bytes, *, head: bool = False
    ) -> None:
        self.entry.status = status
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head and self.command != "HEAD":
            self.wfile.write(body)
            self.entry.body_bytes = len(body)


def main() -> int:
    """Serve one repo `bench/random-GGUF` with `bench.gguf` of random bytes until killed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=150)
    args = parser.parse_args()
    hub = FakeHub().start()
    repo = hub.add_repo("bench/random-GGUF")
    with tempfile.TemporaryDirectory(prefix="fake-hub-") as folder:
        data = os.urandom(args.size_mb * 1_000_000)
        source = Path(folder) / "bench.bin"
        source.write_bytes(data)
        repo.files["bench-Q4_K_M.gguf"] = FakeFile("bench-Q4_K_M.gguf", data, source=source)
        print(hub.url, flush=True)
        try:
            sys.stdin.read()  # until the parent closes our stdin
        finally:
            hub.stop()
    return 0


def serving_hub(monkeypatch: Any, tmp_path: Any) -> Iterator[FakeHub]:
    """Body of the tests' `hub` fixture: a started FakeHub, with huggingface_hub online.

    conftest sets HF_HUB_OFFLINE=1 before huggingface_hub is imported, and the client reads
    it into `constants` at import, so the constant itself is switched off here. The token
    file moves to `tmp_path` and HF_TOKEN is unset, so no real token is ever read or written.
    """
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    hub = FakeHub().start()
    try:
        yield hub
    finally:
        hub.stop()
        huggingface_hub.close_session()


if __name__ == "__main__":
    raise SystemExit(main())
