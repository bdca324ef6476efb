"""Real OpenAI-compatible servers on loopback for the remote backend's tests.

`hearth serve` (tests/core/server/conftest.py) and llama-cpp-python's own server
(`python -m llama_cpp.server`, its `server` extra), both with the starter model; a TLS
certificate authority made with `cryptography`; and a server that accepts and never answers.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _Listening:
    """Copies a server's output to its log file and says when uvicorn is listening: its
    "Uvicorn running on" line comes once the socket is bound, so nothing polls the port."""

    LINE = b"Uvicorn running on "

    def __init__(self, output: IO[bytes], log: Path) -> None:
        self._output, self._log = output, log
        self._said = threading.Event()  # the line came, or the output ended without it
        self.listening = False
        self._thread = threading.Thread(target=self._copy, name="test-server-log", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        with open(self._log, "wb") as log:
            for line in self._output:
                log.write(line)
                log.flush()
                if not self.listening and self.LINE in line:
                    self.listening = True
                    self._said.set()
        self._said.set()

    def wait(self, timeout: float) -> bool:
        """True once the server listens; False if it ended or `timeout` passed first."""
        self._said.wait(timeout)
        return self.listening

    def join(self) -> None:
        self._thread.join(30)


@dataclass
class LlamaCppServer:
    """A running `python -m llama_cpp.server`."""

    url: str
    model: str
    process: subprocess.Popen[bytes]


def llama_cpp_server_available() -> str | None:
    """Why llama-cpp-python's server cannot run here (None: it can)."""
    try:
        import fastapi  # noqa: F401
        import llama_cpp.server.app  # noqa: F401
        import pydantic_settings  # noqa: F401
        import starlette_context  # noqa: F401
    except ImportError as exc:
        return (
            f"llama-cpp-python's server extra is not installed ({exc.name}); "
            "pip install 'llama-cpp-python[server]'"
        )
    return None


@contextmanager
def llama_cpp_server(
    model: Path, log: Path, *, cert: Path | None = None, key: Path | None = None
) -> Iterator[LlamaCppServer]:
    port = free_port()
    args = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", "2048", "--n_threads", "1", "--model_alias", "smol",
    ]  # fmt: skip
    scheme = "http"
    if cert is not None and key is not None:
        args += ["--ssl_certfile", str(cert), "--ssl_keyfile", str(key)]
        scheme = "https"
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    output = _Listening(process.stdout, log)
    url = f"{scheme}://127.0.0.1:{port}/v1"
    try:
        if not output.wait(120):
            raise AssertionError(f"{url} is not listening (exit status {process.poll()}): {log}")
        yield LlamaCppServer(url, "smol", process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        output.join()
        process.stdout.close()


def make_tls_files(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 signed by it: (ca.pem, cert.pem, key.pem)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Hearth test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(paths[2], 0o600)
    return paths


class SilentServer:
    """Accepts TCP connections on loopback and never answers (until closed)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = int(self._sock.getsockname()[1])
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server")
        self._thread.start()

    def _accept(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self._held:
            conn.close()
        self._sock.close()
