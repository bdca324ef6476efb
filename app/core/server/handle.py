"""`ServerHandle`: run the HTTP server on its own thread (and event loop), stop it in order.

Used by `hearth serve` and by the app's server toggle. The handle does not own the
generation service: the caller starts it before and stops it after the server.
"""

from __future__ import annotations

import asyncio
import logging
import threading

import uvicorn

from app.core.server.app import ServerConfig, create_app
from app.core.server.auth import ServerConfigError, is_loopback
from app.core.server.middleware import RequestCallback, RequestRecord
from app.core.server.scheduler import GenerationService

log = logging.getLogger(__name__)


class ServerHandle:
    """The server on a thread. `start()` returns once it listens; `stop()` joins it.

    Args:
        service: Runs the generations (a `Scheduler`, or the app's own worker).
        config: Where to listen and what to allow.
        on_request: Called (on the server thread) after every request with its
            `RequestRecord`; the app counts requests with it.
    """

    def __init__(
        self,
        service: GenerationService,
        config: ServerConfig,
        on_request: RequestCallback | None = None,
    ) -> None:
        if not is_loopback(config.host) and not config.api_key:
            raise ServerConfigError(
                f"Listening on {config.host} lets other computers in, so it needs an API key: "
                "pass --api-key or --api-key-file (or bind 127.0.0.1)."
            )
        self.config = config
        self._on_request = on_request
        self._count = 0
        self._count_lock = threading.Lock()
        app = create_app(service, config, self._record)
        self._server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=config.host,
                port=config.port,
                log_config=None,
                access_log=False,
                lifespan="off",
                timeout_graceful_shutdown=3,
                ws="none",
            )
        )
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None
        self._port = 0

    @property
    def requests(self) -> int:
        """Requests answered so far."""
        return self._count

    @property
    def port(self) -> int:
        """The port it listens on (the real one when asked for 0)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the API, e.g. http://127.0.0.1:8080/v1."""
        host = self.config.host
        shown = f"[{host}]" if ":" in host else host
        if host in ("0.0.0.0", "::"):
            shown = "127.0.0.1"
        return f"http://{shown}:{self._port}/v1"

    @property
    def running(self) -> bool:
        """True between a successful start and stop."""
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 15.0) -> str:
        """Listen; return the URL.

        Raises:
            ServerConfigError: The address cannot be bound (in use, not this machine's).
        """
        self._thread = threading.Thread(target=self._main, name="hearth-server-http")
        self._thread.start()
        while not self._server.started:
            self._thread.join(0.02)
            timeout -= 0.02
            if not self._thread.is_alive() or timeout <= 0:
                self.stop()
                why = f" ({self._failure})" if self._failure else ""
                raise ServerConfigError(
                    f"Cannot listen on {self.config.host}:{self.config.port}{why}: the port may "
                    "be in use or the address not this machine's. Pick another --port or --host."
                )
        sockets = [s for server in self._server.servers for s in server.sockets]
        self._port = int(sockets[0].getsockname()[1]) if sockets else self.config.port
        log.info("serving on %s", self.url)
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, close open streams, join the thread. Safe to call twice."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(timeout)

    def _main(self) -> None:
        try:
            asyncio.run(self._server.serve())
        except BaseException as exc:  # uvicorn exits (SystemExit) when it cannot bind
            self._failure = exc
            log.error("the server stopped: %r", exc)

    def _record(self, record: RequestRecord) -> None:
        with self._count_lock:
            self._count += 1
        if self._on_request is not None:
            self._on_request(record)
