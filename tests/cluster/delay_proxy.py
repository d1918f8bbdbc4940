"""An HTTP forwarder that can make an upstream slow, for timeout tests against real servers.

`DelayProxy(upstream_url)` listens on a free loopback port and forwards each GET to the
upstream after `delay_s` seconds. While it waits it watches the client's socket, so it
records exactly when the client gave up (`cut_after_s`): a test can show that a caller
cut a slow request at its own timeout, not the server's. When the upstream refuses the
connection (stopped), the proxy closes the client's connection without an answer, as a
dead server would look to the caller.
"""

from __future__ import annotations

import select
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import httpx


class DelayProxy:
    """Forwards GETs to `upstream` after `delay_s`; records when slow clients hang up.

    Attributes:
        upstream: base URL requests go to (may be changed while running).
        delay_s: wait before forwarding (may be changed while running).
        cut_after_s: for each request a client abandoned during the delay, how long
            after its arrival the client closed the connection.
        forwarded: number of requests answered from upstream.
    """

    def __init__(self, upstream: str, delay_s: float = 0.0) -> None:
        self.upstream = upstream.rstrip("/")
        self.delay_s = delay_s
        self.cut_after_s: list[float] = []
        self.forwarded = 0
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                arrived = time.monotonic()
                delay = proxy.delay_s
                if delay > 0 and proxy._client_left_within(self.connection, delay):
                    with proxy._lock:
                        proxy.cut_after_s.append(time.monotonic() - arrived)
                    self.close_connection = True
                    return
                try:
                    with httpx.Client(timeout=10) as client:
                        upstream = client.get(proxy.upstream + self.path)
                except httpx.HTTPError:
                    self.close_connection = True  # hang up without an answer: "server down"
                    return
                body = upstream.content
                self.send_response(upstream.status_code)
                self.send_header("Content-Type", upstream.headers.get("content-type", "application/json"))
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                with proxy._lock:
                    proxy.forwarded += 1

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="delay-proxy", daemon=True
        )
        self._thread.start()

    @staticmethod
    def _client_left_within(conn: Any, seconds: float) -> bool:
        """Wait up to `seconds`; True as soon as the client closes its side."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            readable, _, _ = select.select([conn], [], [], left)
            if readable:
                try:
                    if conn.recv(1, 0x2) == b"":  # MSG_PEEK: EOF means the client hung up
                        return True
                except OSError:
                    return True
                time.sleep(min(0.01, max(left, 0)))  # pipelined bytes: keep waiting
        return False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> DelayProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
