"""The event recorder queues without waiting and posts in the background (runtime/events.py)."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing

from edge_sched.codecs.events import pod_ref
from edge_sched.errors import KubeError, KubeRetryable
from edge_sched.runtime.events import QUEUE_LENGTH, EventRecorder
from edge_sched.runtime.metrics import build_metrics


class FakeKube:
    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.posted: list[tuple[str, dict[str, Any]]] = []

    async def request(self, method: str, path: str, *, params: Any = None, body: Any = None) -> dict[str, Any]:
        assert method == "POST"
        if self.fail is not None:
            raise self.fail
        self.posted.append((path, body))
        return {}


def count(recorder: EventRecorder, result: str) -> float:
    return recorder.metrics.events.labels(result)._value.get()


async def test_recorded_events_are_posted_to_their_namespace() -> None:
    kube = FakeKube()
    recorder = EventRecorder(kube, build_metrics(), clock=lambda: 1000.0, instance="h")  # type: ignore[arg-type]
    recorder.record(pod_ref("shop", "web-0", "u"), "Normal", "FollowedPlan", "bound to n2")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.serve)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    ((path, body),) = kube.posted
    assert path == "/api/v1/namespaces/shop/events"
    assert (body["reason"], body["involvedObject"]["name"]) == ("FollowedPlan", "web-0")
    assert count(recorder, "posted") == 1


async def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    recorder = EventRecorder(FakeKube(), build_metrics(), instance="h")  # type: ignore[arg-type]
    for i in range(QUEUE_LENGTH + 5):
        recorder.record(pod_ref("ns", f"p{i}", "u"), "Normal", "R", "m")  # no service running: nothing drains
    assert count(recorder, "dropped") == 5


async def test_refused_events_are_counted_and_the_poster_carries_on() -> None:
    for fail in (KubeError("events is forbidden", 403), KubeRetryable("no answer within 5s")):
        recorder = EventRecorder(FakeKube(fail), build_metrics(), instance="h")  # type: ignore[arg-type]
        recorder.record(pod_ref("ns", "a", "u"), "Warning", "R", "m")
        recorder.record(pod_ref("ns", "b", "u"), "Warning", "R", "m")
        async with trio.open_nursery() as nursery:
            nursery.start_soon(recorder.serve)
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
        assert count(recorder, "failed") == 2
