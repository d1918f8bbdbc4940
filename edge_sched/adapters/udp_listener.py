"""The UDP listener for computing-power reports (spec S6.1): receive, check, decode, apply.

It owns one datagram socket and nothing else: decoding is `codecs.power_report`, state is
the sink (the power store). Every datagram is handled to the end synchronously, so a
report is applied whole or not at all, and a bad one is dropped, counted by reason and
logged at a bounded rate: a flood of garbage can neither crash the loop nor flood the log.

Oversize detection: the socket reads into a buffer one byte larger than UDP_BUFFER_SIZE.
Linux cuts a datagram that does not fit and returns only what fit, so a read that fills
the whole buffer proves the datagram was larger than UDP_BUFFER_SIZE; it is rejected as
`oversize` instead of being decoded from a silently cut prefix. The buffer is allocated
once and reused: nothing is allocated per datagram from what a sender claims.

The socket asks for a large receive buffer (SO_RCVBUF) so bursts from many reporters
queue in the kernel while the loop is busy; the kernel caps it at net.core.rmem_max.
"""

from __future__ import annotations

import logging
import math
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, Protocol

import attrs
import trio

from edge_sched.codecs.power_report import decode_report
from edge_sched.core.power import PowerReport
from edge_sched.errors import DecodeError

if TYPE_CHECKING:
    # Types only: adapters do not depend on the runtime layer.
    from edge_sched.runtime.metrics import PowerMetrics
    from edge_sched.settings import UdpSettings

log = logging.getLogger(__name__)

OVERSIZE = "oversize"
SOURCE_NOT_ALLOWED = "source_not_allowed"
INTERNAL_ERROR = "internal_error"

# Requested kernel receive buffer. The kernel charges each queued datagram about 1 KiB
# however small, so this holds several thousand reports: a burst of a few hundred ms.
RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
# Datagrams handled per wake-up before yielding to other tasks (~2 ms of work).
BATCH = 100


class ReportSink(Protocol):
    def apply(self, report: PowerReport) -> None: ...


@attrs.define
class LogLimiter:
    """At most `burst` lines per `interval_s`; the next allowed line says how many were held back."""

    interval_s: float = 10.0
    burst: int = 5
    clock: Callable[[], float] = time.monotonic
    _window_start: float = -math.inf
    _used: int = 0
    _suppressed: int = 0

    def allow(self) -> tuple[bool, int]:
        """(may log now, lines suppressed since the last one logged)."""
        now = self.clock()
        if now - self._window_start >= self.interval_s:
            self._window_start, self._used = now, 0
        if self._used < self.burst:
            self._used += 1
            held, self._suppressed = self._suppressed, 0
            return True, held
        self._suppressed += 1
        return False, 0


@attrs.define(eq=False)
class ReportIngest:
    """Handles one datagram: allowlist, size, decode, apply, count. Never raises."""

    cfg: UdpSettings
    sink: ReportSink
    metrics: PowerMetrics
    limiter: LogLimiter = attrs.Factory(LogLimiter)

    def handle(self, data: bytes | bytearray | memoryview, source: str) -> str | None:
        """Returns None when the report was applied, else the drop reason."""
        try:
            if not self.cfg.allows(source):
                return self._drop(SOURCE_NOT_ALLOWED, source, "sender not in UDP_ALLOWED_SOURCES")
            if len(data) > self.cfg.buffer_size:
                return self._drop(OVERSIZE, source, f"datagram larger than UDP_BUFFER_SIZE ({self.cfg.buffer_size})")
            try:
                report = decode_report(data)
            except DecodeError as exc:
                return self._drop(exc.reason, source, str(exc))
            self.sink.apply(report)
        except Exception as exc:  # a bug must cost one datagram, not the listener
            log.debug("report handling failed", exc_info=True)
            return self._drop(INTERNAL_ERROR, source, f"{exc.__class__.__name__}: {exc}")
        self.metrics.reports.inc()
        self.metrics.latest_report_timestamp.set_to_current_time()
        return None

    def _drop(self, reason: str, source: str, why: str) -> str:
        self.metrics.parse_errors.labels(reason).inc()
        allowed, held = self.limiter.allow()
        if allowed:
            more = f" ({held} more bad reports were not logged)" if held else ""
            log.warning("dropped computing-power report from %s: %s: %s%s", source, reason, why, more)
        return reason


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


async def run_udp_listener(
    cfg: UdpSettings,
    sink: ReportSink,
    metrics: PowerMetrics,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Receive reports on UDP_SERVICE_HOST:UDP_SERVICE_PORT forever.

    The socket is a non-blocking stdlib socket driven by `trio.lowlevel.wait_readable`:
    once readable, up to `BATCH` queued datagrams are handled before yielding again. A
    trio socket would yield to the scheduler once per datagram, which at 20,000 reports/s
    costs as much as decoding them; the batch bound keeps the HTTP server responsive.

    Args:
        cfg: the `udp` settings section.
        sink: where decoded reports go (the power store).
        metrics: counters of accepted and dropped reports.
        task_status: started with the bound port.

    Raises:
        OSError: the address cannot be bound (the supervisor restarts with backoff).
    """
    ingest = ReportIngest(cfg, sink, metrics)
    with socket.socket(_family(cfg.host), socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
        except OSError as exc:  # some sandboxes refuse it; the default still works
            log.warning("could not enlarge the UDP receive buffer: %s", exc)
        if sock.family == socket.AF_INET6:
            # "::" should take IPv4 senders too (seen as ::ffff:a.b.c.d, which the
            # allowlist matches as IPv4).
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((cfg.host, cfg.port))  # never blocks for a datagram socket
        port: int = sock.getsockname()[1]
        granted = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        log.info(
            "computing-power reports on udp %s:%d (datagrams up to %d bytes, receive buffer %d bytes)",
            cfg.host, port, cfg.buffer_size, granted,
        )
        task_status.started(port)
        buffer = bytearray(cfg.buffer_size + 1)
        view = memoryview(buffer)
        while True:
            await trio.lowlevel.wait_readable(sock)
            for _ in range(BATCH):
                try:
                    size, address = sock.recvfrom_into(buffer)
                except BlockingIOError:
                    break
                ingest.handle(view[:size], str(address[0]))
