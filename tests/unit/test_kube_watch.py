"""The list+watch reflector: resume from the last version, relist on 410, back off on errors."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest
import trio
import trio.testing

from edge_sched.adapters.kube_watch import ReflectorStatus, WatchTarget, run_reflector
from edge_sched.core.backoff import Backoff
from edge_sched.errors import KubeGone, KubeRetryable
from edge_sched.runtime.cluster import ClusterCache, NodeSink


def node(name: str, rv: str, cpu: str = "4") -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": rv}, "status": {"allocatable": {"cpu": cpu}}}


class FakeApi:
    """Scripted API server: each watch call plays the next script step."""

    def __init__(self, pages: list[dict[str, Any]], watches: list[Any]) -> None:
        self.pages = pages
        self.watches = watches
        self.lists = 0
        self.watch_versions: list[str] = []

    async def request(self, method: str, path: str, *, params: Mapping[str, str] | None = None, body: Any = None) -> dict[str, Any]:
        self.lists += 1
        return self.pages[min(self.lists - 1, len(self.pages) - 1)]

    async def watch(self, path: str, params: Mapping[str, str], on_event: Callable[[dict[str, Any]], Awaitable[None] | None], on_open: Callable[[], None] = lambda: None) -> None:
        self.watch_versions.append(params["resourceVersion"])
        if not self.watches:
            await trio.sleep_forever()
        step = self.watches.pop(0)
        if isinstance(step, Exception):
            raise step
        on_open()
        for event in step:
            on_event(event)


TARGET = WatchTarget("nodes", "/api/v1/nodes")


async def run_until(api: FakeApi, cache: ClusterCache, status: ReflectorStatus, done: Callable[[], bool]) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_reflector, api, TARGET, NodeSink(cache), status, Backoff(max_s=2))  # type: ignore[arg-type]
        with trio.fail_after(120):
            while not done():
                await trio.sleep(0.05)
        nursery.cancel_scope.cancel()


async def test_list_then_watch_events_update_the_cache(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeApi(
        [{"metadata": {"resourceVersion": "10"}, "items": [node("a", "9")]}],
        [[{"type": "ADDED", "object": node("b", "11")}, {"type": "MODIFIED", "object": node("a", "12", cpu="8")},
          {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "15"}}}]],
    )
    cache, status = ClusterCache(), ReflectorStatus()
    await run_until(api, cache, status, lambda: len(api.watch_versions) >= 2)
    assert sorted(cache.nodes) == ["a", "b"]
    assert cache.nodes["a"].allocatable["cpu"] == 8000
    # The second watch resumes from the bookmark, without listing again.
    assert api.watch_versions[:2] == ["10", "15"] and api.lists == 1
    assert status.synced and status.last_error == ""


async def test_gone_relists(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeApi(
        [{"metadata": {"resourceVersion": "10"}, "items": [node("a", "9")]},
         {"metadata": {"resourceVersion": "50"}, "items": [node("c", "49")]}],
        [KubeGone("too old", 410)],
    )
    cache, status = ClusterCache(), ReflectorStatus()
    await run_until(api, cache, status, lambda: len(api.watch_versions) >= 2)
    assert api.lists == 2 and api.watch_versions[:2] == ["10", "50"]
    assert sorted(cache.nodes) == ["c"]  # the relist replaced the stale view


async def test_errors_back_off_and_clear_when_the_watch_reopens(autojump_clock: trio.testing.MockClock) -> None:
    api = FakeApi(
        [{"metadata": {"resourceVersion": "10"}, "items": []}],
        [KubeRetryable("connection refused"), KubeRetryable("connection refused"), []],
    )
    cache, status = ClusterCache(), ReflectorStatus()
    errors: list[str] = []

    def done() -> bool:
        if status.last_error:
            errors.append(status.last_error)
        return len(api.watch_versions) >= 4

    start = trio.current_time()
    await run_until(api, cache, status, done)
    assert "connection refused" in errors[0]
    assert status.last_error == ""  # cleared by the reopened watch
    # Two backoffs of at most 0.5 s and 1 s (full jitter keeps them above half).
    assert 0.75 <= trio.current_time() - start <= 2.0
    assert api.watch_versions == ["10", "10", "10", "10"]


@pytest.mark.parametrize("attempts", [1, 5, 12])
def test_backoff_is_bounded_and_jittered(attempts: int) -> None:
    backoff = Backoff(initial_s=0.5, max_s=30)
    delays = [backoff.next_delay() for _ in range(attempts)]
    cap = min(30, 0.5 * 2 ** (attempts - 1))
    assert cap / 2 <= delays[-1] <= cap
    backoff.reset()
    assert backoff.next_delay() <= 0.5
