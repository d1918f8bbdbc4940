"""The Prometheus/Thanos poller: live node usage for filter rule 4 and the score (spec S7).

Owns the only HTTP client that talks to the monitoring API. Every
`MONITOR_POLL_INTERVAL` it runs the CPU and the memory query side by side, each bounded
by `MONITOR_REQUEST_TIMEOUT` with a trio cancel scope (the httpx client has no timeout
of its own), decodes the answer with the pure codec and publishes the fresh readings to
the usage store. The extender verbs read the store and never wait for a poll.

A query that fails (unreachable, timeout, `status: error`, garbage) leaves the previous
readings in the store, where they age out after two poll periods; decisions then fall
back to the next source. Every query is counted in
`edge_sched_monitor_polls_total{result}`; log lines are written when a query's result
changes (ok -> timeout -> ok), not on every poll, so an outage does not flood the log.

Thanos Query speaks the same API; `dedup` and `partial_response` are sent only when set.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import NoReturn

import attrs
import httpx
import trio

from edge_sched import __version__
from edge_sched.codecs.prom import PromResponseError, decode_query_response
from edge_sched.core.load import PROMETHEUS, index_samples, unmatched_series
from edge_sched.core.model import CPU, MEMORY, NodeInfo
from edge_sched.runtime.metrics import Metrics
from edge_sched.runtime.usage import UsageStore
from edge_sched.settings import MonitorSettings

log = logging.getLogger(__name__)


def stale_after_s(cfg: MonitorSettings) -> float:
    """Readings older than two poll periods are stale (spec S7)."""
    return 2 * cfg.poll_interval_s


def queries(cfg: MonitorSettings) -> dict[str, str]:
    """resource -> PromQL, with `{window}` replaced by the metrics window (`5m`)."""
    return {
        CPU: cfg.cpu_query.replace("{window}", cfg.window),
        MEMORY: cfg.memory_query.replace("{window}", cfg.window),
    }


def query_params(cfg: MonitorSettings, promql: str) -> dict[str, str]:
    """The query string: the PromQL, plus Thanos' `dedup` / `partial_response` when set."""
    params = {"query": promql}
    for name, value in (("dedup", cfg.dedup), ("partial_response", cfg.partial_response)):
        if value != "auto":  # auto: leave the server's default alone (plain Prometheus has none)
            params[name] = value
    return params


@attrs.define(eq=False)
class _QueryState:
    """Last result per resource, so state changes (not every poll) are logged."""

    last: dict[str, str] = attrs.field(factory=dict)

    def changed(self, resource: str, result: str) -> bool:
        before = self.last.get(resource)
        self.last[resource] = result
        return before != result


async def run_prom_poller(
    cfg: MonitorSettings,
    store: UsageStore,
    metrics: Metrics,
    *,
    nodes: Callable[[], Iterable[NodeInfo]] = tuple,
    transport: httpx.AsyncBaseTransport | None = None,
    wall_clock: Callable[[], float] = time.time,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Poll forever, first poll at once, then every `cfg.poll_interval_s` (fixed rate).

    Args:
        cfg: the monitor settings (URL, queries, interval, timeout).
        store: where readings go (source `prometheus`).
        metrics: `monitor_polls` and `monitor_series_skipped` are counted here.
        nodes: the known nodes, only to report series that match none of them.
        transport: an httpx transport (tests: `httpx.MockTransport`).
        wall_clock: unix time, to age samples by their Prometheus timestamps.
    """
    store.enable(PROMETHEUS, stale_after_s(cfg))
    state = _QueryState()
    url = cfg.query_url
    headers = {"Accept": "application/json", "User-Agent": f"edge-sched/{__version__}"}
    # timeout=None: every request is bounded by the cancel scope in `_poll_one`.
    async with httpx.AsyncClient(timeout=None, transport=transport, headers=headers) as client:
        task_status.started()
        interval = cfg.poll_interval_s
        next_at = trio.current_time()
        while True:
            async with trio.open_nursery() as nursery:
                for resource, promql in queries(cfg).items():
                    nursery.start_soon(
                        _poll_one, client, url, query_params(cfg, promql), resource, cfg, store, metrics, state,
                        nodes, wall_clock,
                    )
            next_at += interval
            now = trio.current_time()
            if next_at <= now:
                # A poll overran the interval: keep the cadence, skip the missed ticks.
                next_at += math.floor((now - next_at) / interval + 1) * interval
            await trio.sleep_until(next_at)


async def _poll_one(
    client: httpx.AsyncClient,
    url: str,
    params: Mapping[str, str],
    resource: str,
    cfg: MonitorSettings,
    store: UsageStore,
    metrics: Metrics,
    state: _QueryState,
    nodes: Callable[[], Iterable[NodeInfo]],
    wall_clock: Callable[[], float],
) -> None:
    result, detail = await _query(client, url, params, resource, cfg, store, metrics, nodes, wall_clock)
    metrics.monitor_polls.labels(result).inc()
    if result in ("ok", "empty"):
        if state.changed(resource, result):
            if result == "empty":
                log.warning(
                    "monitor: %s query matched no usable series; %s usage unknown (%s)", resource, resource, detail
                )
            else:
                log.info("monitor: %s query ok (%s)", resource, detail)
        return
    store.fail(PROMETHEUS, f"{resource} query {result}: {detail}", resource)
    if state.changed(resource, result):
        log.warning("monitor: %s query %s: %s; using older readings until stale", resource, result, detail)


async def _query(
    client: httpx.AsyncClient,
    url: str,
    params: Mapping[str, str],
    resource: str,
    cfg: MonitorSettings,
    store: UsageStore,
    metrics: Metrics,
    nodes: Callable[[], Iterable[NodeInfo]],
    wall_clock: Callable[[], float],
) -> tuple[str, str]:
    """One query: (result label, detail). Publishes readings on success."""
    response: httpx.Response | None = None
    with trio.move_on_after(cfg.request_timeout_s) as scope:
        try:
            response = await client.get(url, params=params)
        except httpx.HTTPError as exc:
            return "unreachable", f"{exc.__class__.__name__}: {exc}"
    if scope.cancelled_caught or response is None:
        return "timeout", f"no answer within {cfg.request_timeout_s:g}s"
    try:
        decoded = decode_query_response(response.content)
    except PromResponseError as exc:
        if exc.kind == "bad_response" and response.status_code >= 300:
            return "bad_response", f"HTTP {response.status_code}"
        return exc.kind, str(exc)
    indexed = index_samples(
        decoded.samples, wall_now_s=wall_clock(), now=store.clock(), max_age_s=stale_after_s(cfg)
    )
    store.publish(PROMETHEUS, resource, indexed.index)
    skipped = [s.reason for s in decoded.skipped] + [r.reason for r in indexed.rejected]
    known = list(nodes())
    if known:
        skipped += [r.reason for r in unmatched_series(indexed.accepted, known)]
    for reason in skipped:
        metrics.monitor_series_skipped.labels(resource, reason).inc()
    for warning in decoded.warnings:
        log.debug("monitor: %s query warning: %s", resource, warning)
    detail = f"{len(indexed.accepted)} series, {len(skipped)} left out"
    if decoded.warnings:
        detail += f", warnings: {'; '.join(decoded.warnings)[:200]}"
    return ("ok" if len(indexed.index) else "empty"), detail
