"""UDP client of the computing-power router (spec S6.3): one request, tries, backoff, matching.

Each `quantify` call uses its own fresh socket (a new ephemeral port), so an answer to an
earlier call can never be taken for this one: it goes to a socket that is closed. Within
a call, replies from any address other than the router's are ignored (counted in the
debug log) and the wait continues; a late reply to an earlier *try* of the same call is
accepted, since it answers the very same question.

Timing (all by trio cancel scopes, never socket timeouts): each try waits UDP_TIMEOUT
for an answer; before try k+1 (k ≥ 1) the client sleeps UDP_RETRY_DELAY, doubled per
retry (delay × 2^(k−1)) when UDP_EXPONENTIAL_BACKOFF; UDP_MAX_RETRIES is the number of
tries in total. An answer of the wrong length or with the wrong N ends the try as
invalid. The caller bounds the whole call with its own scope (the extender's deadline).
"""

from __future__ import annotations

import logging
import socket
from typing import TYPE_CHECKING

import attrs
import trio

from edge_sched.codecs.power_report import decode_router_response
from edge_sched.core.power import RouterAnswer
from edge_sched.errors import DecodeError, EdgeSchedError

if TYPE_CHECKING:
    from edge_sched.runtime.metrics import PowerMetrics
    from edge_sched.settings import RouterSettings

log = logging.getLogger(__name__)

# A valid answer is at most 1 + 6 × 255 bytes; a larger datagram reads as a wrong length.
RECEIVE_BYTES = 2048


class RouterUnavailable(EdgeSchedError):
    """No valid answer after all tries; `reason` is timeout, invalid or error."""

    def __init__(self, reason: str, message: str, tries: int) -> None:
        super().__init__(message)
        self.reason = reason
        self.tries = tries


@attrs.frozen
class _Failed:
    reason: str  # timeout, invalid, error
    message: str


def retry_delay_s(cfg: RouterSettings, retry: int) -> float:
    """The pause before retry number `retry` (1 = the second try)."""
    if cfg.exponential_backoff:
        return cfg.retry_delay_s * 2.0 ** (retry - 1)
    return cfg.retry_delay_s


@attrs.define(eq=False)
class RouterClient:
    cfg: RouterSettings
    metrics: PowerMetrics

    async def _address(self) -> tuple[socket.AddressFamily, tuple[str, int]]:
        infos = await trio.socket.getaddrinfo(self.cfg.host, self.cfg.port, type=socket.SOCK_DGRAM)
        if not infos:
            raise OSError(f"cannot resolve {self.cfg.host}")
        family, _, _, _, sockaddr = infos[0]
        return family, (str(sockaddr[0]), int(sockaddr[1]))

    async def quantify(self, request: bytes, count: int) -> tuple[RouterAnswer, ...]:
        """Send `request` (an encoded Task-Computing-Force-Request for `count` containers).

        Returns:
            The router's per-container answers.

        Raises:
            RouterUnavailable: every try timed out, answered invalidly or failed to send.
        """
        cfg = self.cfg
        try:
            family, address = await self._address()
        except OSError as exc:
            self.metrics.router_requests.labels("error").inc()
            raise RouterUnavailable("error", f"router {cfg.host}:{cfg.port}: {exc}", 0) from None
        last_reason, last_message = "timeout", ""
        with trio.socket.socket(family, socket.SOCK_DGRAM) as sock:
            for attempt in range(1, cfg.max_retries + 1):
                if attempt > 1:
                    await trio.sleep(retry_delay_s(cfg, attempt - 1))
                result = await self._try(sock, address, request, count)
                if not isinstance(result, _Failed):
                    self.metrics.router_requests.labels("ok").inc()
                    return result
                last_reason, last_message = result.reason, result.message
                self.metrics.router_requests.labels(last_reason).inc()
                log.debug("router try %d/%d: %s", attempt, cfg.max_retries, last_message)
        tries = cfg.max_retries
        raise RouterUnavailable(
            last_reason, f"router {cfg.host}:{cfg.port}: {last_message} (after {tries} tr{'y' if tries == 1 else 'ies'})", tries
        )

    async def _try(
        self, sock: trio.socket.SocketType, address: tuple[str, int], request: bytes, count: int
    ) -> tuple[RouterAnswer, ...] | _Failed:
        """One try: the answers, or why there are none."""
        try:
            await sock.sendto(request, address)
        except OSError as exc:
            return _Failed("error", f"send failed: {exc}")
        with trio.move_on_after(self.cfg.timeout_s):
            while True:
                try:
                    data, source = await sock.recvfrom(RECEIVE_BYTES)
                except OSError as exc:  # e.g. ICMP port unreachable reported on the socket
                    return _Failed("error", f"receive failed: {exc}")
                if (str(source[0]), int(source[1])) != address:
                    log.debug("ignoring a datagram from %s, not the router %s", source, address)
                    continue
                try:
                    return decode_router_response(data, count)
                except DecodeError as exc:
                    return _Failed("invalid", f"invalid answer: {exc.reason}: {exc}")
        return _Failed("timeout", f"no answer within UDP_TIMEOUT ({self.cfg.timeout_s:g}s)")
