"""Resource status (spec S8): node status records, reported statuses, the feed's clients.

What this module owns:

* `StatusBook`: the node status record (cluster facts + live usage + computing power +
  last reported status) for every known node, and the statuses reported over the
  feed. A reported status is kept for COMPUTING_POWER_EXPIRY_TIME, like a UDP report,
  and its CPU/memory usage is offered to the live-usage chain as the `status-report`
  source, after the UDP computing-power reports (docs/resource-status.md).
* `Client` and `ClientSet`: the connected clients, at most RESOURCE_STATUS_MAX_CONNECTIONS.
  Each client's outgoing data is bounded: at most `REPLY_QUEUE` replies (the client's own
  reader waits when they are not going out, which is backpressure on that client only)
  plus *one* pending broadcast (a newer broadcast replaces an unsent one: coalescing).
  The broadcaster never waits on a client.
* `pump`: the one task per client that writes to its socket. Every write is watched by
  a deadline of RESOURCE_STATUS_BROADCAST_TIMEOUT; a write that does not finish in time
  drops the client: its TCP connection is reset. (A close frame cannot reach a peer
  that stopped reading, and Hypercorn shields socket writes from cancellation, so
  cancelling the write alone would not free it; see adapters/tcp_abort.py.)
* `run_broadcaster`, `run_cleanup`, `run_shutdown_closer`: the nursery services.

Nothing here knows about Quart: the adapter hands `pump` its send/close functions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, NoReturn

import attrs
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from edge_sched.codecs import resource_status as wire
from edge_sched.codecs.resource_status import (
    ClusterFacts,
    LiveUsage,
    MessageError,
    PowerFacts,
    Query,
    ReportedFacts,
    StatusReport,
)
from edge_sched.core.load import STATUS_REPORT, NodeUsage, Reading, resolve_usage
from edge_sched.core.model import CPU, NodeInfo
from edge_sched.runtime.changes import ChangeLog
from edge_sched.runtime.cluster import ClusterCache
from edge_sched.runtime.power_store import FreshEntry, PowerStore
from edge_sched.runtime.usage import ReportUsage, UsageStore
from edge_sched.settings import ResourceStatusSettings

log = logging.getLogger(__name__)

REPLY_QUEUE = 4  # replies waiting per client; its reader waits beyond this
NODES_PER_CHECKPOINT = 50  # records built between two checkpoints of a large frame
ZONE_LABEL = "topology.kubernetes.io/zone"
CLOSE_GOING_AWAY = 1001
CLOSE_MESSAGE_TOO_BIG = 1009
CLOSE_TRY_AGAIN_LATER = 1013
_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


# -- metrics (S9) -------------------------------------------------------------------------


@attrs.frozen
class ResourceStatusMetrics:
    connections: Gauge
    messages: Counter
    errors: Counter
    broadcast_duration: Histogram


def build_resource_status_metrics(registry: CollectorRegistry) -> ResourceStatusMetrics:
    """The seed's four names, on `registry` (registered only when the feed is enabled)."""
    return ResourceStatusMetrics(
        connections=Gauge(
            "resource_status_connections_total", "WebSocket clients connected now (a gauge).", registry=registry
        ),
        messages=Counter(
            "resource_status_messages",
            "WebSocket messages by direction (in, out) and type (query, update, invalid; query_result, "
            "update_ack, error, status_update).",
            ["direction", "type"],
            registry=registry,
        ),
        errors=Counter(
            "resource_status_errors",
            "Resource-status errors by reason (invalid_json, invalid_message, unknown_node, unauthorized, "
            "oversize, over_capacity, send_timeout, transport_not_found).",
            ["reason"],
            registry=registry,
        ),
        broadcast_duration=Histogram(
            "resource_status_broadcast_duration_seconds",
            "Time to build one status_update and hand it to every client (never waits on a client).",
            buckets=_DURATION_BUCKETS,
            registry=registry,
        ),
    )


# -- node status records ------------------------------------------------------------------


@attrs.frozen
class Reported:
    report: StatusReport
    at: float  # book clock (monotonic)
    wall: float  # unix seconds


@attrs.frozen
class StatusReportUsage:
    """Reported statuses as a live-usage source (the `usage_of` of `StatusBook`); readings
    are dated by the status's arrival, and the book hands out the same record until the node
    reports again or its status expires (`version`)."""

    book: StatusBook
    now: float  # book clock, read once per decision
    source: str = STATUS_REPORT

    @property
    def max_age_s(self) -> float:
        return self.book.report_max_age_s  # the book drops older statuses by itself

    def get(self, resource: str, node: NodeInfo) -> Reading | None:
        reported = self.book.reported(node.name, self.now)
        if reported is None:
            return None
        usage = reported.report.usage_ratio("cpu" if resource == CPU else "memory")
        return Reading(usage, reported.at)

    def version(self, node: NodeInfo) -> object:
        return self.book.reported(node.name, self.now)


@attrs.frozen
class _Snapshot:
    """What one set of records is built from: taken once, read per node."""

    names: list[str]
    sources: list[Any]
    power: dict[str, list[FreshEntry]]  # node -> fresh entries, by type
    now: float
    wall: float


@attrs.define(eq=False)
class StatusBook:
    """Node status records and reported statuses.

    Args:
        report_max_age_s: how long a reported status counts (COMPUTING_POWER_EXPIRY_TIME).
        power: the computing-power store, None when computing power is disabled.
        usage: the live-usage store, None when nothing measures usage.
    """

    cache: ClusterCache
    report_max_age_s: float
    power: PowerStore | None = None
    usage: UsageStore | None = None
    clock: Callable[[], float] = trio.current_time
    wall_clock: Callable[[], float] = time.time
    _reported: dict[str, Reported] = attrs.field(factory=dict)
    changes: ChangeLog = attrs.field(factory=ChangeLog)  # per node, for the verbs (runtime/rows.py)

    # -- reported statuses ----------------------------------------------------------------
    def known(self, name: str) -> bool:
        """S8: a node is known from the cluster cache or a fresh computing-power report."""
        return name in self.cache.nodes or (self.power is not None and self.power.node_power(name) is not None)

    def apply(self, report: StatusReport) -> None:
        self._reported[report.node_id] = Reported(report, self.clock(), self.wall_clock())
        self.changes.node(report.node_id)

    def reported(self, name: str, now: float | None = None) -> Reported | None:
        """The node's reported status while fresh (as of `now`, default the book's clock)."""
        entry = self._reported.get(name)
        if entry is None or (self.clock() if now is None else now) - entry.at > self.report_max_age_s:
            return None
        return entry

    def sweep(self) -> int:
        """Forget expired reported statuses; returns how many went."""
        now = self.clock()
        expired = [n for n, r in self._reported.items() if now - r.at > self.report_max_age_s]
        for name in expired:
            del self._reported[name]
        return len(expired)

    def reported_count(self) -> int:
        now = self.clock()
        return sum(1 for r in self._reported.values() if now - r.at <= self.report_max_age_s)

    def usage_source(self) -> StatusReportUsage:
        return StatusReportUsage(self, self.clock())

    # -- records --------------------------------------------------------------------------
    def names(self) -> list[str]:
        """Known nodes, plus nodes whose reported status is still fresh."""
        return self._snapshot(None).names

    def records(self, only: str | None = None) -> dict[str, dict[str, Any]]:
        """Status records of every node (or of `only`; empty when it is unknown)."""
        snap = self._snapshot(only)
        return {name: self._record(name, snap) for name in snap.names}

    async def encoded_nodes(self, only: str | None = None) -> tuple[str, int]:
        """The `nodes` object of a frame, encoded, and how many nodes it holds.

        Built node by node with a checkpoint every `NODES_PER_CHECKPOINT` nodes, so that a
        large cluster's broadcast (1,000 nodes: tens of milliseconds of CPU) never holds the
        event loop, and the extender verbs answer in between.
        """
        snap = self._snapshot(only)
        pieces: list[str] = []
        names = snap.names
        for start in range(0, len(names), NODES_PER_CHECKPOINT):
            if start:
                await trio.lowlevel.checkpoint()
            chunk = names[start : start + NODES_PER_CHECKPOINT]
            pieces.append(wire.node_members({name: self._record(name, snap) for name in chunk}))
        return wire.nodes_object(pieces), len(names)

    def _snapshot(self, only: str | None) -> _Snapshot:
        now, wall = self.clock(), self.wall_clock()
        power: dict[str, list[FreshEntry]] = {}
        if self.power is not None:
            for fresh in self.power.fresh(only):
                power.setdefault(fresh.entry.host.name, []).append(fresh)
        names = set(self.cache.nodes) | set(power)
        names.update(n for n, r in self._reported.items() if now - r.at <= self.report_max_age_s)
        ordered = sorted(names) if only is None else [only] if only in names else []
        return _Snapshot(ordered, self._usage_sources(), power, now, wall)

    def _usage_sources(self) -> list[Any]:
        if self.usage is not None:
            sources: list[Any] = self.usage.snapshots()
            if not any(s.source == STATUS_REPORT for s in sources):
                # The store does not carry the status-report source: add it last, so the
                # page still shows reported usage for nodes nothing else measures.
                sources.append(self.usage_source())
        else:
            sources = [ReportUsage(self.power.usage_reader())] if self.power is not None else []
            sources.append(self.usage_source())
        return sources

    def _record(self, name: str, snap: _Snapshot) -> dict[str, Any]:
        now = snap.now
        node = self.cache.nodes.get(name)
        cluster = None
        if node is not None:
            load = self.cache.load(name)
            cluster = ClusterFacts(
                ready=node.ready,
                unschedulable=node.unschedulable,
                allocatable=node.allocatable,
                requested=load.requested,
                pod_count=load.pod_count,
                addresses=node.addresses,
                zone=node.labels.get(ZONE_LABEL),
            )
        info = node if node is not None else NodeInfo(name)
        resolved: NodeUsage = (
            self.usage.usage(info, snap.sources) if self.usage is not None else resolve_usage(info, snap.sources, now)
        )
        usage = LiveUsage(resolved.source, resolved.cpu, resolved.memory, resolved.note)
        power: list[PowerFacts] = []
        for fresh in snap.power.get(name, ()):
            host = fresh.entry.host
            power.append(
                PowerFacts(
                    type=host.type.label,
                    unit=host.type.unit,
                    units=len(host.units),
                    total=host.total_power,
                    available=host.available_power,
                    average_load_pct=host.average_load_pct,
                    total_memory_gib=host.total_memory_gib,
                    available_memory_gib=host.available_memory_gib,
                    report_id=fresh.entry.report_id,
                    age_s=fresh.age_s,
                )
            )
        entry = self._reported.get(name)
        reported = None
        if entry is not None and now - entry.at <= self.report_max_age_s:
            reported = ReportedFacts(entry.report, entry.wall, max(0.0, now - entry.at))
        return wire.node_record(name, cluster=cluster, usage=usage, power=power, reported=reported)


# -- clients ------------------------------------------------------------------------------


@attrs.frozen
class OutFrame:
    """One outgoing message: its type (a metrics label) and its JSON text."""

    type: str
    text: str


@attrs.frozen
class CloseFrame:
    code: int
    reason: str


class ClientGone(Exception):
    """The client is being closed or was dropped; nothing more is queued for it."""


@attrs.define(eq=False)
class Client:
    """One connected client and its bounded outgoing data.

    Args:
        abort_transport: resets the client's TCP connection; returns False when it could
            not (the connection is already gone).
    """

    id: int
    peer: str
    abort_transport: Callable[[], bool]
    connected_at: float
    cancel_scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    sending_since: float | None = None
    dropped: str | None = None  # why the server dropped it
    _replies: tuple[trio.MemorySendChannel[OutFrame], trio.MemoryReceiveChannel[OutFrame]] = attrs.field(
        factory=lambda: trio.open_memory_channel[OutFrame](REPLY_QUEUE)
    )
    _pending_broadcast: OutFrame | None = None
    _close: CloseFrame | None = None
    _wakeup: trio.Event = attrs.field(factory=trio.Event)

    def _wake(self) -> None:
        self._wakeup.set()

    @property
    def closing(self) -> bool:
        return self._close is not None or self.dropped is not None

    def offer_broadcast(self, frame: OutFrame) -> bool:
        """Queue `frame` without waiting; returns True when it replaced an unsent one."""
        if self.closing:
            return False
        replaced = self._pending_broadcast is not None
        self._pending_broadcast = frame
        self._wake()
        return replaced

    async def reply(self, frame: OutFrame) -> None:
        """Queue a reply; waits while REPLY_QUEUE replies are not yet out (this client only)."""
        if self.closing:
            raise ClientGone(self.dropped or "closing")
        await self._replies[0].send(frame)
        self._wake()

    def request_close(self, code: int, reason: str) -> None:
        """Send a close frame next; nothing else is sent after it."""
        if self._close is None:
            self._close = CloseFrame(code, reason)
            self._wake()

    def drop(self, reason: str) -> bool:
        """Disconnect now: reset the TCP connection and stop this client's tasks.

        Returns whether the transport was found and reset.
        """
        if self.dropped is not None:
            return True
        self.dropped = reason
        found = self.abort_transport()
        self.cancel_scope.cancel()
        self._wake()
        return found

    async def next_frame(self) -> OutFrame | CloseFrame | None:
        """The next thing to send: close first, then replies, then the latest broadcast.

        Returns None once the client was dropped.
        """
        while True:
            if self.dropped is not None:
                return None
            if self._close is not None:
                return self._close
            try:
                return self._replies[1].receive_nowait()
            except trio.WouldBlock:
                pass
            if self._pending_broadcast is not None:
                frame, self._pending_broadcast = self._pending_broadcast, None
                return frame
            await self._wakeup.wait()
            self._wakeup = trio.Event()


@attrs.define(eq=False)
class ClientSet:
    """The connected clients, at most `max_connections`."""

    max_connections: int
    metrics: ResourceStatusMetrics
    clock: Callable[[], float] = trio.current_time
    _clients: dict[int, Client] = attrs.field(factory=dict)
    _next_id: int = 1
    dropped_total: int = 0

    def __len__(self) -> int:
        return len(self._clients)

    def __iter__(self) -> Iterator[Client]:
        return iter(list(self._clients.values()))

    def admit(self, peer: str, abort_transport: Callable[[], bool]) -> Client | None:
        """A new client, or None when the set is full (refuse it with 1013)."""
        if len(self._clients) >= self.max_connections:
            self.metrics.errors.labels("over_capacity").inc()
            return None
        client = Client(self._next_id, peer, abort_transport, self.clock())
        self._next_id += 1
        self._clients[client.id] = client
        self.metrics.connections.set(len(self._clients))
        return client

    def remove(self, client: Client) -> None:
        if self._clients.pop(client.id, None) is not None:
            self.metrics.connections.set(len(self._clients))

    def drop(self, client: Client, reason: str, metric_reason: str) -> None:
        if client.dropped is not None:
            return
        self.dropped_total += 1
        self.metrics.errors.labels(metric_reason).inc()
        found = client.drop(reason)
        if not found:
            self.metrics.errors.labels("transport_not_found").inc()
            log.warning("resource-status: client %d (%s): %s; its connection was already gone", client.id, client.peer, reason)
        else:
            log.info("resource-status: dropped client %d (%s): %s", client.id, client.peer, reason)
        self.remove(client)

    def broadcast(self, frame: OutFrame) -> int:
        """Offer `frame` to every client without waiting; returns how many replaced an unsent one."""
        replaced = 0
        for client in self._clients.values():
            replaced += client.offer_broadcast(frame)
        return replaced

    def close_all(self, code: int, reason: str) -> None:
        for client in self._clients.values():
            client.request_close(code, reason)

    def sweep(self, send_timeout_s: float) -> int:
        """Remove clients that are dropped or stuck in a write past the timeout.

        A safety net: `pump`'s watchdog and the handler's own clean-up normally leave
        nothing for it. Returns how many clients went.
        """
        now = self.clock()
        removed = 0
        for client in list(self._clients.values()):
            if client.dropped is not None:
                self.remove(client)
                removed += 1
            elif client.sending_since is not None and now - client.sending_since > send_timeout_s:
                self.drop(client, f"a write has been pending for {now - client.sending_since:.1f}s", "send_timeout")
                removed += 1
        return removed


async def pump(
    client: Client,
    clients: ClientSet,
    send: Callable[[str], Awaitable[None]],
    close: Callable[[int, str], Awaitable[None]],
    timeout_s: float,
) -> None:
    """Write `client`'s frames to its socket, one at a time, each within `timeout_s`.

    Returns after sending a close frame, or when the client is gone. A write that raises
    (the peer started closing, C26) ends the client like an ordinary close: no traceback.
    """
    metrics = clients.metrics
    while True:
        frame = await client.next_frame()
        if frame is None:
            return
        kind = "close" if isinstance(frame, CloseFrame) else frame.type
        async with trio.open_nursery() as guard:
            guard.start_soon(_watchdog, client, clients, timeout_s, kind)
            client.sending_since = clients.clock()
            try:
                if isinstance(frame, CloseFrame):
                    await close(frame.code, frame.reason)
                else:
                    await send(frame.text)
            except Exception as exc:  # noqa: BLE001 - any send failure means the connection is over
                log.info(
                    "resource-status: client %d (%s): connection closed while sending %s (%s)",
                    client.id, client.peer, kind, exc.__class__.__name__,
                )
                client.request_close(1000, "")
                guard.cancel_scope.cancel()
                return
            finally:
                client.sending_since = None
            guard.cancel_scope.cancel()
        if client.dropped is not None or isinstance(frame, CloseFrame):
            return
        metrics.messages.labels("out", frame.type).inc()


async def _watchdog(client: Client, clients: ClientSet, timeout_s: float, kind: str) -> None:
    await trio.sleep(timeout_s)
    clients.drop(client, f"could not take a {kind} message within {timeout_s:g}s", "send_timeout")


# -- the service --------------------------------------------------------------------------


@attrs.define(eq=False)
class BroadcastStats:
    count: int = 0
    last_wall: float | None = None
    last_duration_s: float | None = None
    coalesced: int = 0  # broadcasts that replaced an unsent one
    late_ticks: int = 0


@attrs.define(eq=False)
class ResourceStatusService:
    settings: ResourceStatusSettings
    book: StatusBook
    clients: ClientSet
    metrics: ResourceStatusMetrics
    auth_token: str = ""
    stats: BroadcastStats = attrs.field(factory=BroadcastStats)
    wall_clock: Callable[[], float] = time.time

    # -- messages -------------------------------------------------------------------------
    async def handle_message(self, message: str | bytes, *, may_update: bool) -> OutFrame:
        """The reply to one inbound message (never raises on client input)."""
        metrics = self.metrics
        try:
            decoded = wire.decode_message(message)
        except MessageError as exc:
            metrics.messages.labels("in", "invalid").inc()
            metrics.errors.labels(exc.reason).inc()
            return OutFrame("error", wire.error_frame(exc.request_id, str(exc)))
        if isinstance(decoded, Query):
            metrics.messages.labels("in", "query").inc()
            nodes_json, count = await self.book.encoded_nodes(decoded.node)
            if decoded.node is not None and not count:
                metrics.errors.labels("unknown_node").inc()
                return OutFrame(
                    "error",
                    wire.error_frame(decoded.request_id, f"query: node {decoded.node!r} is not known"),
                )
            return OutFrame("query_result", wire.query_result_from(decoded.request_id, nodes_json, self.wall_clock()))
        metrics.messages.labels("in", "update").inc()
        if not may_update:
            metrics.errors.labels("unauthorized").inc()
            return OutFrame(
                "error",
                wire.error_frame(
                    decoded.request_id,
                    "update: not allowed; connect with 'Authorization: Bearer <API_AUTH_TOKEN>' to send updates",
                ),
            )
        if not self.book.known(decoded.node_id):
            metrics.errors.labels("unknown_node").inc()
            return OutFrame(
                "error",
                wire.error_frame(
                    decoded.request_id,
                    f"node_id: node {decoded.node_id!r} is not known (not in the cluster cache and no fresh "
                    "computing-power report)",
                ),
            )
        self.book.apply(decoded)
        return OutFrame("update_ack", wire.update_ack(decoded))

    # -- broadcast ------------------------------------------------------------------------
    async def broadcast_once(self) -> float | None:
        """Build one status_update and offer it to every client; returns the duration.

        The frame's timestamp is when building started; it is encoded once and the same
        text goes to every client.
        """
        if not len(self.clients):
            return None
        started = time.perf_counter()
        stamp = self.wall_clock()
        nodes_json, _ = await self.book.encoded_nodes()
        frame = OutFrame("status_update", wire.status_update_from(stamp, nodes_json))
        self.stats.coalesced += self.clients.broadcast(frame)
        duration = time.perf_counter() - started
        self.metrics.broadcast_duration.observe(duration)
        self.stats.count += 1
        self.stats.last_wall = self.wall_clock()
        self.stats.last_duration_s = duration
        return duration

    def cleanup(self) -> tuple[int, int]:
        """Sweep dead clients and expired reported statuses; returns (clients, statuses)."""
        return self.clients.sweep(self.settings.broadcast_timeout_s), self.book.sweep()

    def health(self) -> dict[str, Any]:
        stats = self.stats
        return {
            "status": "healthy",
            "active_connections": len(self.clients),
            "max_connections": self.settings.max_connections,
            "update_interval_s": self.settings.update_interval_s,
            "broadcast_timeout_s": self.settings.broadcast_timeout_s,
            "cleanup_interval_s": self.settings.cleanup_interval_s,
            "nodes": len(self.book.names()),
            "reported_nodes": self.book.reported_count(),
            "broadcasts": stats.count,
            "last_broadcast_at": stats.last_wall,
            "last_broadcast_duration_s": None if stats.last_duration_s is None else round(stats.last_duration_s, 6),
            "coalesced_broadcasts": stats.coalesced,
            "dropped_clients": self.clients.dropped_total,
        }


def build_resource_status(
    settings: ResourceStatusSettings,
    registry: CollectorRegistry,
    cache: ClusterCache,
    *,
    report_max_age_s: float,
    power: PowerStore | None,
    usage: UsageStore | None,
    auth_token: str = "",
) -> ResourceStatusService:
    """The feed's state, wired to the stores; reported statuses join the live-usage chain."""
    metrics = build_resource_status_metrics(registry)
    book = StatusBook(cache, report_max_age_s, power=power, usage=usage)
    if usage is not None:
        usage.attach(STATUS_REPORT, book.usage_source, book.changes)
    return ResourceStatusService(
        settings, book, ClientSet(settings.max_connections, metrics), metrics, auth_token=auth_token
    )


# -- nursery services ---------------------------------------------------------------------


async def run_broadcaster(service: ResourceStatusService) -> NoReturn:
    """Broadcast every RESOURCE_STATUS_UPDATE_INTERVAL on a fixed schedule (no drift).

    A tick that comes too late (the loop was busy for longer than an interval) is not
    made up for: the schedule restarts from now, and `late_ticks` counts it.
    """
    interval = service.settings.update_interval_s
    next_at = trio.current_time() + interval
    while True:
        await trio.sleep_until(next_at)
        await service.broadcast_once()
        next_at += interval
        now = trio.current_time()
        if next_at <= now:
            service.stats.late_ticks += 1
            next_at = now + interval


async def run_cleanup(service: ResourceStatusService) -> NoReturn:
    """Every RESOURCE_STATUS_CLEANUP_INTERVAL: dead clients and expired reported statuses."""
    while True:
        await trio.sleep(service.settings.cleanup_interval_s)
        clients, statuses = service.cleanup()
        if clients or statuses:
            log.info("resource-status cleanup: %d dead client(s), %d expired status(es)", clients, statuses)


async def run_shutdown_closer(service: ResourceStatusService, shutdown: Callable[[], Awaitable[object]]) -> None:
    """On SIGTERM close every client with 1001, so the HTTP server can drain at once."""
    await shutdown()
    service.clients.close_all(CLOSE_GOING_AWAY, "server shutting down")
    await trio.sleep_forever()


def services(
    service: ResourceStatusService, shutdown: Callable[[], Awaitable[object]]
) -> list[tuple[str, Callable[[], Awaitable[object]]]]:
    """(name, service) pairs for the supervisor's nursery."""
    return [
        ("resource-status-broadcaster", lambda: run_broadcaster(service)),
        ("resource-status-cleanup", lambda: run_cleanup(service)),
        ("resource-status-shutdown", lambda: run_shutdown_closer(service, shutdown)),
    ]
