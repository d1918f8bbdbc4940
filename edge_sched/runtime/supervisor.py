"""The one nursery that runs the daemon (spec S2). Wiring only, no rules.

Order: HTTP server, metrics server, then background services (reflectors,
sweepers, later the UDP listener, poller, broadcaster and deployer), each under
`supervise` so a crash is logged, counted and restarted with backoff and never
takes the HTTP server down. SIGTERM/SIGINT: health turns 503, Hypercorn stops
accepting and drains in-flight requests for SHUTDOWN_GRACE_PERIOD, then
everything else is cancelled and the process exits 0.
"""

from __future__ import annotations

import gc
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from functools import partial

import attrs
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.trio import serve

from edge_sched.adapters.http.app import create_app
from edge_sched.adapters.kube_client import KubeClient, KubeTarget
from edge_sched.adapters.kube_watch import (
    ASSIGNED_PODS,
    NODES,
    ReflectorStatus,
    run_reflector,
)
from edge_sched.adapters.metrics_http import metrics_app
from edge_sched.adapters.node_metrics_poller import run_node_metrics_poller
from edge_sched.adapters.prom_poller import run_prom_poller
from edge_sched.adapters.sd_notify import sd_notify
from edge_sched.codecs.resource_status import MAX_MESSAGE_BYTES as WS_MAX_MESSAGE_BYTES
from edge_sched.core.backoff import Backoff
from edge_sched.runtime.batch_planner import BatchPlanner
from edge_sched.runtime.cluster import ClusterCache, NodeSink, PodSink
from edge_sched.runtime.events import EventRecorder
from edge_sched.runtime.metrics import Metrics, build_metrics
from edge_sched.runtime.plans import PlanStore
from edge_sched.runtime.power import (
    PowerService,
    build_power_service,
    run_power_sweeper,
)
from edge_sched.runtime.resource_status import (
    ResourceStatusService,
    build_resource_status,
)
from edge_sched.runtime.resource_status import services as resource_status_services
from edge_sched.runtime.scheduler import Scheduler
from edge_sched.runtime.status import DRAINING, SERVING, DaemonStatus
from edge_sched.runtime.task_placement import batch_placer
from edge_sched.runtime.task_plans import TaskPlanService
from edge_sched.runtime.usage import UsageStore
from edge_sched.settings import Settings

log = logging.getLogger(__name__)

# How long start-up waits for the first cache sync before serving anyway.
STARTUP_SYNC_GRACE_S = 10.0
PLAN_SWEEP_INTERVAL_S = 30.0


@attrs.define(eq=False)
class Daemon:
    """Everything the services share; built once per `run`."""

    settings: Settings
    metrics: Metrics
    cache: ClusterCache
    scheduler: Scheduler
    status: DaemonStatus
    kube: KubeClient | None
    events: EventRecorder | None  # None: standalone
    resource_status: ResourceStatusService | None = None  # None: RESOURCE_STATUS_ENABLED=false
    task_plans: TaskPlanService | None = None  # None: TASK_PLANNING_ENABLED=false
    batch_planner: BatchPlanner | None = None  # None: ENABLE_OPTIMIZER=false


def build_daemon(settings: Settings, kube_target: KubeTarget | None) -> Daemon:
    metrics = build_metrics()
    cache = ClusterCache()
    plans = PlanStore(clock=time.time, expiration_s=settings.scheduler.plan_expiration_s)
    kube = KubeClient(kube_target, settings.kube.request_timeout_s) if kube_target else None
    events = EventRecorder(kube, metrics) if kube is not None else None
    power = build_power_service(settings, metrics.registry) if settings.computing_power.enabled else None
    usage = build_usage(settings, cache, metrics, power)
    scheduler = Scheduler(
        settings=settings, cache=cache, plans=plans, metrics=metrics, kube=kube, power=power, usage=usage,
        events=events,
    )
    status = DaemonStatus(
        kube_source=kube_target.source if kube_target else "",
        app_name=settings.app.name,
        app_version=settings.app.version,
    )
    status.probes["load"] = lambda: usage.health(cache.nodes.values())
    feed = None
    if settings.resource_status.enabled:
        feed = build_resource_status(
            settings.resource_status, metrics.registry, cache,
            report_max_age_s=settings.computing_power.expiry_s,
            power=power.store if power is not None else None,
            usage=usage,
            auth_token=settings.server.auth_token,
        )
    daemon = Daemon(settings, metrics, cache, scheduler, status, kube, events, feed)
    if settings.optimizer.enabled:  # S10
        daemon.batch_planner = BatchPlanner.for_scheduler(scheduler)
    if settings.task_planning.enabled:  # S11
        placer = batch_placer(daemon.batch_planner) if daemon.batch_planner is not None else None
        daemon.task_plans = TaskPlanService(settings, kube, placer, events=events)
        daemon.task_plans.register_metrics(metrics.registry)
        status.probes["task_planning"] = daemon.task_plans.health
    return daemon


async def supervise(
    name: str, service: Callable[[], Awaitable[object]], metrics: Metrics, backoff: Backoff
) -> None:
    """Run `service` forever, restarting it with backoff when it fails."""
    while True:
        try:
            await service()
            log.warning("service %s returned; restarting it", name)
        except Exception:
            log.exception("service %s crashed; restarting it", name)
        metrics.service_restarts.labels(name).inc()
        await trio.sleep(backoff.next_delay())


def _hypercorn_config(settings: Settings, port: int, *, tls: bool) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"{settings.server.host}:{port}"]
    config.graceful_timeout = settings.server.shutdown_grace_s
    config.accesslog = None
    # Hypercorn listens with a backlog of 100: a burst of new connections beyond it overflows
    # the accept queue and clients see resets. Go servers use net.core.somaxconn (4096 here);
    # the kernel caps the value at somaxconn anyway.
    config.backlog = 4096
    config.errorlog = logging.getLogger("hypercorn.error")
    # S8: a WebSocket message over 64 KiB closes with 1009 (Hypercorn does it as frames arrive).
    config.websocket_max_message_size = WS_MAX_MESSAGE_BYTES
    server = settings.server
    if tls and server.tls_cert_file:
        config.certfile = server.tls_cert_file
        config.keyfile = server.tls_key_file
        if server.tls_client_ca_file:
            # kube-scheduler's extender tlsConfig presents a client certificate.
            import ssl

            config.ca_certs = server.tls_client_ca_file
            config.verify_mode = ssl.CERT_REQUIRED
    return config


async def _watch_signals(shutdown: trio.Event, status: DaemonStatus, root: trio.CancelScope, grace_s: float) -> None:
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for signum in signals:
            log.info("received %s; draining for up to %.1fs", signal.Signals(signum).name, grace_s)
            status.phase = DRAINING
            shutdown.set()
            # A hard stop for anything that ignores the graceful path.
            root.deadline = min(root.deadline, trio.current_time() + grace_s + 1.5)
            return


def settle_heap() -> None:
    """Take everything alive now out of the garbage collector's full collections (gc.freeze).

    Run once, when the cache has first synced: the nodes and pods listed then (at 5,000
    nodes and 50,000 pods, most of the heap) would otherwise be walked by every full
    collection, a pause of 100 ms and more in the middle of a verb (docs/benchmarks.md).
    They are acyclic records, freed by reference counting when replaced; only a garbage
    cycle among the frozen objects would outlive its use, and those records form none.
    """
    gc.collect()
    gc.freeze()


async def _mark_serving(daemon: Daemon) -> None:
    if daemon.kube is not None:
        with trio.move_on_after(STARTUP_SYNC_GRACE_S):
            while not daemon.cache.synced:
                await daemon.cache.wait_changed()
        if not daemon.cache.synced:
            log.warning("cache not synced after %.0fs; serving anyway", STARTUP_SYNC_GRACE_S)
        else:
            settle_heap()
    daemon.status.phase = SERVING
    sd_notify("READY=1")
    log.info("serving (%s)", daemon.status.kubernetes())


async def _sweep_plans(daemon: Daemon) -> None:
    while True:
        await trio.sleep(PLAN_SWEEP_INTERVAL_S)
        daemon.scheduler.plans.sweep()
        daemon.metrics.cache_nodes.set(len(daemon.cache.nodes))
        daemon.metrics.cache_pods.set(len(daemon.cache.pods))


async def run_daemon(
    settings: Settings,
    kube_target: KubeTarget | None,
    *,
    task_status: trio.TaskStatus[Daemon] = trio.TASK_STATUS_IGNORED,
) -> None:
    daemon = build_daemon(settings, kube_target)
    shutdown = trio.Event()
    try:
        async with trio.open_nursery() as nursery:
            root = nursery.cancel_scope
            nursery.start_soon(_watch_signals, shutdown, daemon.status, root, settings.server.shutdown_grace_s)
            app = create_app(
                daemon.scheduler, daemon.status, daemon.resource_status, daemon.task_plans, daemon.batch_planner
            )
            http = _hypercorn_config(settings, settings.server.port, tls=True)

            async def serve_http(task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED) -> None:
                await serve(app, http, shutdown_trigger=shutdown.wait, task_status=task_status)
                root.cancel()  # the API has drained: stop everything else

            bound = await nursery.start(serve_http)
            log.info("extender API on %s%s", ", ".join(bound), settings.server.api_root)
            if settings.metrics.enabled:
                metrics_http = _hypercorn_config(settings, settings.metrics.port, tls=False)
                metrics_bound = await nursery.start(
                    partial(serve, metrics_app(daemon.metrics.registry), metrics_http, shutdown_trigger=shutdown.wait)
                )
                log.info("metrics on %s/metrics", ", ".join(metrics_bound))
            if daemon.kube is not None:
                _start_reflectors(nursery, daemon)
            if daemon.events is not None:
                nursery.start_soon(supervise, "event-poster", daemon.events.serve, daemon.metrics, Backoff())
            nursery.start_soon(supervise, "plan-sweeper", lambda: _sweep_plans(daemon), daemon.metrics, Backoff())
            if daemon.scheduler.power is not None:
                _start_power(nursery, daemon.scheduler.power, daemon)
            _start_load(nursery, daemon)
            if daemon.resource_status is not None:
                for name, service in resource_status_services(daemon.resource_status, shutdown.wait):
                    nursery.start_soon(supervise, name, service, daemon.metrics, Backoff())
            if daemon.task_plans is not None and daemon.kube is not None:
                nursery.start_soon(
                    supervise, "task-plan-deployer", daemon.task_plans.serve, daemon.metrics, Backoff()
                )
            nursery.start_soon(_mark_serving, daemon)
            task_status.started(daemon)
    finally:
        if daemon.kube is not None:
            with trio.move_on_after(1, shield=True):
                await daemon.kube.aclose()
    log.info("stopped")


def _start_reflectors(nursery: trio.Nursery, daemon: Daemon) -> None:
    assert daemon.kube is not None
    kube = daemon.kube
    backoff_max = daemon.settings.kube.watch_backoff_max_s
    for target, sink in ((NODES, NodeSink(daemon.cache)), (ASSIGNED_PODS, PodSink(daemon.cache))):
        status = ReflectorStatus()
        daemon.status.reflectors[target.kind] = status

        async def reflect(target=target, sink=sink, status=status) -> None:  # type: ignore[no-untyped-def]
            await run_reflector(kube, target, sink, status, Backoff(max_s=backoff_max))

        nursery.start_soon(supervise, f"{target.kind}-reflector", reflect, daemon.metrics, Backoff(max_s=backoff_max))


def _start_power(nursery: trio.Nursery, power: PowerService, daemon: Daemon) -> None:
    """The UDP report listener and the expiry sweeper (S6.1, S6.2), each supervised."""
    settings = daemon.settings
    daemon.status.probes["computing_power"] = power.health
    nursery.start_soon(supervise, "udp-listener", power.serve_reports, daemon.metrics, Backoff())
    nursery.start_soon(
        supervise, "power-sweeper",
        lambda: run_power_sweeper(power.store, settings.computing_power.cleanup_interval_s),
        daemon.metrics, Backoff(),
    )


def build_usage(settings: Settings, cache: ClusterCache, metrics: Metrics, power: PowerService | None) -> UsageStore:
    """The live-usage store (S7); UDP report load joins the chain when computing power is on."""
    monitor = settings.monitor
    usage = UsageStore(damping_settle_s=monitor.metrics_window_min * 60.0 if settings.load.hotspot_damping else None)
    if power is not None:
        usage.attach_reports(power.store.usage_reader, power.store.expiry_s, power.store.changes)
    metrics.registry.register(usage.collector(lambda: cache.nodes.values()))
    return usage


def _start_load(nursery: trio.Nursery, daemon: Daemon) -> None:
    """The Prometheus poller (unless MONITOR_API_URL is empty) and, with a cluster, the
    metrics.k8s.io poller that keeps the first fallback warm; each supervised."""
    settings, usage, cache = daemon.settings, daemon.scheduler.usage, daemon.cache
    assert usage is not None
    if settings.monitor.polling_enabled:
        nursery.start_soon(
            supervise, "prom-poller",
            lambda: run_prom_poller(settings.monitor, usage, daemon.metrics, nodes=lambda: cache.nodes.values()),
            daemon.metrics, Backoff(),
        )
    else:
        log.info("MONITOR_API_URL is empty: no Prometheus polling")
    if daemon.kube is not None:
        kube = daemon.kube
        nursery.start_soon(
            supervise, "node-metrics-poller",
            lambda: run_node_metrics_poller(
                kube, lambda: cache.nodes, usage, daemon.metrics, settings.monitor.poll_interval_s
            ),
            daemon.metrics, Backoff(),
        )
