"""List+watch reflectors that keep the cluster cache current.

Each reflector lists (paginated) to get a consistent snapshot and its
resourceVersion, then watches from there with bookmarks. A stream that ends is
resumed from the last resourceVersion seen; `410 Gone` (the version fell out of
etcd's window, e.g. after a long API-server outage) triggers a fresh list.
Errors back off with jitter up to KUBE_WATCH_BACKOFF_MAX and never end the task.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any, Protocol, TypeVar, runtime_checkable

import attrs
import trio

from edge_sched.adapters.kube_client import KubeClient
from edge_sched.core.backoff import Backoff
from edge_sched.errors import KubeError, KubeGone

log = logging.getLogger(__name__)

T = TypeVar("T")

LIST_PAGE_SIZE = 500
# The server closes a watch after this long; a client-side scope 30 s later
# catches a connection that died silently (no FIN, e.g. a NAT drop).
WATCH_SERVER_TIMEOUT_S = 300
WATCH_CLIENT_GRACE_S = 30


class Sink(Protocol):
    def replace(self, objects: list[dict[str, Any]]) -> None: ...
    def upsert(self, obj: dict[str, Any]) -> None: ...
    def delete(self, obj: dict[str, Any]) -> None: ...


@runtime_checkable
class DecodingSink(Sink, Protocol):
    """A sink that keeps lean records: a list is decoded page by page, so the raw JSON of
    a 50,000-pod list is never in memory at once (only one 500-object page is)."""

    def decode(self, obj: dict[str, Any]) -> Any | None: ...
    def replace_decoded(self, records: list[Any]) -> None: ...


@attrs.frozen
class WatchTarget:
    kind: str  # "nodes" / "pods", for logs and health
    path: str
    params: dict[str, str] = attrs.field(factory=dict)


@attrs.define(eq=False)
class ReflectorStatus:
    """What health reports about a reflector."""

    synced: bool = False
    last_error: str = ""
    relists: int = 0

    def healthy(self) -> None:
        """The API server answered again (a list or a watch opened)."""
        self.last_error = ""


def _resource_version(obj: dict[str, Any]) -> str | None:
    meta = obj.get("metadata")
    if isinstance(meta, dict) and meta.get("resourceVersion"):
        return str(meta["resourceVersion"])
    return None


async def list_all(client: KubeClient, target: WatchTarget) -> tuple[list[dict[str, Any]], str]:
    return await list_decoded(client, target, lambda obj: obj)


async def list_decoded(
    client: KubeClient, target: WatchTarget, decode: Callable[[dict[str, Any]], T | None]
) -> tuple[list[T], str]:
    """Every object of a paginated list through `decode` (None: left out), and the list's
    resourceVersion. Each page is decoded as it arrives and then dropped."""
    items: list[T] = []
    params = {**target.params, "limit": str(LIST_PAGE_SIZE)}
    while True:
        page = await client.request("GET", target.path, params=params)
        for obj in page.get("items") or []:
            if isinstance(obj, dict) and (record := decode(obj)) is not None:
                items.append(record)
        meta = page.get("metadata") or {}
        del page
        if not meta.get("continue"):
            return items, str(meta.get("resourceVersion") or "")
        params = {**params, "continue": str(meta["continue"])}


async def _watch_from(
    client: KubeClient, target: WatchTarget, sink: Sink, version: str, status: ReflectorStatus
) -> str:
    """Watch until the stream ends; returns the last resourceVersion seen."""
    last = version

    def on_event(event: dict[str, Any]) -> None:
        nonlocal last
        kind = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            return
        if kind == "ERROR":
            code = obj.get("code")
            message = f"watch {target.kind}: {obj.get('message', 'error event')}"
            raise KubeGone(message, 410) if code == 410 else KubeError(message, int(code or 0))
        if kind in ("ADDED", "MODIFIED"):
            sink.upsert(obj)
        elif kind == "DELETED":
            sink.delete(obj)
        last = _resource_version(obj) or last

    params = {
        **target.params,
        "resourceVersion": version,
        "allowWatchBookmarks": "true",
        "timeoutSeconds": str(WATCH_SERVER_TIMEOUT_S + random.randint(0, 30)),
    }
    with trio.move_on_after(WATCH_SERVER_TIMEOUT_S + WATCH_CLIENT_GRACE_S + 30):
        await client.watch(target.path, params, on_event, on_open=status.healthy)
    return last


async def run_reflector(
    client: KubeClient,
    target: WatchTarget,
    sink: Sink,
    status: ReflectorStatus,
    backoff: Backoff,
) -> None:
    """Keep `sink` in step with the API server forever."""
    version: str | None = None
    while True:
        try:
            if version is None:
                if isinstance(sink, DecodingSink):
                    records, version = await list_decoded(client, target, sink.decode)
                    count = len(records)
                    sink.replace_decoded(records)
                else:
                    objects, version = await list_all(client, target)
                    count = len(objects)
                    sink.replace(objects)
                # Not kept for the watch that follows: at 50,000 pods the raw list alone
                # is hundreds of MB.
                records = objects = []
                status.synced = True
                status.healthy()
                status.relists += 1
                log.info("%s: listed %d objects at resourceVersion %s", target.kind, count, version)
            version = await _watch_from(client, target, sink, version, status)
            backoff.reset()
        except KubeGone as exc:
            log.info("%s: %s; listing again", target.kind, exc)
            version = None
        except KubeError as exc:
            status.last_error = str(exc)
            delay = backoff.next_delay()
            log.warning("%s: %s; retrying in %.1fs", target.kind, exc, delay)
            await trio.sleep(delay)


NODES = WatchTarget("nodes", "/api/v1/nodes")
# Pods that occupy node resources: assigned and not terminal. A pod leaving the
# selector (e.g. Succeeded) arrives as DELETED, which is what we want.
ASSIGNED_PODS = WatchTarget(
    "pods",
    "/api/v1/pods",
    {"fieldSelector": "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"},
)
