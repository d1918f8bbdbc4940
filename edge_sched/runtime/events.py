"""Posting Kubernetes Events without ever making a decision wait for them (spec S4).

Events are for people running `kubectl describe`; a bind or a task-plan step must not wait on
one, nor fail because the API server refused one. `record` only queues (a full queue drops
the event and counts it as `dropped`); the `event-poster` service posts the queue one event at
a time, each call bounded by the Kubernetes request timeout, and counts `posted` or `failed`.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

from edge_sched.adapters.kube_client import KubeClient
from edge_sched.codecs.events import EventType, ObjectRef, event_object
from edge_sched.errors import KubeError
from edge_sched.runtime.metrics import Metrics

log = logging.getLogger(__name__)

QUEUE_LENGTH = 256  # a burst of binds that all followed plans; more are dropped, not buffered


@attrs.define(eq=False)
class EventRecorder:
    kube: KubeClient
    metrics: Metrics
    clock: Callable[[], float] = time.time
    instance: str = attrs.field(factory=socket.gethostname)
    _send: trio.MemorySendChannel[dict[str, Any]] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[dict[str, Any]] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[dict[str, Any]](QUEUE_LENGTH)

    def record(self, ref: ObjectRef, event_type: EventType, reason: str, message: str) -> None:
        """Queue an event about `ref`; never waits."""
        event = event_object(ref, event_type, reason, message, at=self.clock(), instance=self.instance)
        try:
            self._send.send_nowait(event)
        except trio.WouldBlock:
            self.metrics.events.labels("dropped").inc()

    async def serve(self) -> None:
        """Post queued events until cancelled."""
        async for event in self._receive:
            namespace = event["metadata"]["namespace"]
            try:
                await self.kube.request("POST", f"/api/v1/namespaces/{namespace}/events", body=event)
            except KubeError as exc:
                self.metrics.events.labels("failed").inc()
                log.warning("event %s about %s/%s not posted: %s", event["reason"], namespace,
                            event["involvedObject"]["name"], exc)
            else:
                self.metrics.events.labels("posted").inc()
