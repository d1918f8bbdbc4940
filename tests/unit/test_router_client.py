"""The router client (S6.3) and the demand precedence (S6.4) against fake UDP routers.

Real sockets on 127.0.0.1, virtual time (autojump_clock): timeouts, retry counts and
backoff are asserted to the exact virtual second.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio
from prometheus_client import CollectorRegistry

from edge_sched.adapters.router_client import RouterClient, RouterUnavailable, retry_delay_s
from edge_sched.codecs.power_report import decode_router_request, encode_router_request, encode_router_response
from edge_sched.core.power import ContainerProfile, RouterAnswer
from edge_sched.runtime.metrics import build_power_metrics
from edge_sched.runtime.power import ROUTER_COOLDOWN_S, PowerService
from edge_sched.runtime.power_store import PowerStore
from edge_sched.settings import RouterSettings, Settings

PROFILES = [ContainerProfile(2, 1, 25, 1, 0)]
REQUEST, _ = encode_router_request(PROFILES)
GOOD = encode_router_response([RouterAnswer(2, 5.05, 0.0)])

Reply = Callable[[bytes], list[tuple[float, bytes, bool]]]  # -> (delay, data, from_other_port)


@attrs.define
class FakeRouter:
    """Answers each request per `reply`; records (virtual time, request) pairs."""

    reply: Reply
    port: int = 0
    seen: list[tuple[float, bytes]] = attrs.field(factory=list)

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        sock = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        other = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with sock, other:
            await sock.bind(("127.0.0.1", 0))
            await other.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
            task_status.started(self.port)
            async with trio.open_nursery() as nursery:
                while True:
                    data, source = await sock.recvfrom(4096)
                    self.seen.append((trio.current_time(), data))
                    for delay, answer, from_other in self.reply(data):
                        nursery.start_soon(self._send, other if from_other else sock, delay, answer, source)

    @staticmethod
    async def _send(sock: trio.socket.SocketType, delay: float, data: bytes, to: Any) -> None:
        await trio.sleep(delay)
        await sock.sendto(data, to)

    @property
    def times(self) -> list[float]:
        return [t for t, _ in self.seen]


def router_settings(port: int, **kw: Any) -> RouterSettings:
    base = dict(host="127.0.0.1", port=port, timeout_s=1.0, max_retries=3, retry_delay_s=0.5, exponential_backoff=True)
    base.update(kw)
    return RouterSettings(**base)  # type: ignore[arg-type]


async def start(nursery: trio.Nursery, reply: Reply) -> FakeRouter:
    router = FakeRouter(reply)
    await nursery.start(router.run)
    return router


def client(router: FakeRouter, **kw: Any) -> tuple[RouterClient, CollectorRegistry]:
    registry = CollectorRegistry()
    return RouterClient(router_settings(router.port, **kw), build_power_metrics(registry, lambda: 0)), registry


def tries(registry: CollectorRegistry, result: str) -> float:
    return registry.get_sample_value("edge_sched_router_requests_total", {"result": result}) or 0.0


def never(_: bytes) -> list[tuple[float, bytes, bool]]:
    return []


# -- client ----------------------------------------------------------------------------------


def test_retry_delays() -> None:
    exp = router_settings(1, retry_delay_s=0.5, exponential_backoff=True)
    flat = router_settings(1, retry_delay_s=0.5, exponential_backoff=False)
    assert [retry_delay_s(exp, k) for k in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert [retry_delay_s(flat, k) for k in (1, 2, 3)] == [0.5, 0.5, 0.5]


async def test_prompt_answer(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    router = await start(nursery, lambda req: [(0.0, GOOD, False)])
    rc, registry = client(router)
    answers = await rc.quantify(REQUEST, 1)
    assert answers == (RouterAnswer(2, 5.05, 0.0),)
    assert decode_router_request(router.seen[0][1]) == tuple(PROFILES)
    assert trio.current_time() == 0.0 and tries(registry, "ok") == 1


async def test_no_answer_tries_max_retries_with_exponential_backoff(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    router = await start(nursery, never)
    rc, registry = client(router)
    with pytest.raises(RouterUnavailable) as info:
        await rc.quantify(REQUEST, 1)
    # try 1 at 0, waits 1; +0.5; try 2 at 1.5, waits 1; +1.0; try 3 at 3.5, waits 1.
    assert router.times == [0.0, 1.5, 3.5]
    assert trio.current_time() == 4.5
    assert info.value.reason == "timeout" and info.value.tries == 3
    assert "no answer within UDP_TIMEOUT (1s) (after 3 tries)" in str(info.value)
    assert tries(registry, "timeout") == 3


async def test_no_answer_with_a_constant_delay(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    router = await start(nursery, never)
    rc, _ = client(router, exponential_backoff=False, max_retries=4)
    with pytest.raises(RouterUnavailable):
        await rc.quantify(REQUEST, 1)
    assert router.times == [0.0, 1.5, 3.0, 4.5]
    assert trio.current_time() == 5.5


async def test_single_try_means_no_retry(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    router = await start(nursery, never)
    rc, _ = client(router, max_retries=1)
    with pytest.raises(RouterUnavailable, match=r"after 1 try\)"):
        await rc.quantify(REQUEST, 1)
    assert router.times == [0.0] and trio.current_time() == 1.0


async def test_late_answer_is_taken_on_the_retry(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    # Each answer arrives 1.2 s after its request: after the 1 s try timed out. It waits
    # in the socket and answers the retry at once: same call, same question.
    router = await start(nursery, lambda req: [(1.2, GOOD, False)])
    rc, registry = client(router)
    assert await rc.quantify(REQUEST, 1) == (RouterAnswer(2, 5.05, 0.0),)
    assert router.times == [0.0, 1.5]
    assert trio.current_time() == 1.5
    assert (tries(registry, "timeout"), tries(registry, "ok")) == (1, 1)


@pytest.mark.parametrize(
    "bad",
    [
        GOOD[:-1],  # one byte short
        GOOD + b"\x00",  # one byte long
        encode_router_response([RouterAnswer(2, 5.0, 0.0)] * 2),  # N = 2 for a request of 1
        bytes((1, 0, 2, 5, 100, 0, 0)),  # hundredths 100
    ],
)
async def test_wrong_answers_are_invalid_and_retried(
    bad: bytes, nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    router = await start(nursery, lambda req: [(0.1, bad, False)])
    rc, registry = client(router)
    with pytest.raises(RouterUnavailable) as info:
        await rc.quantify(REQUEST, 1)
    assert info.value.reason == "invalid"
    # Invalid answers end a try at once: 0 +0.1 | +0.5 | 0.6 +0.1 | +1.0 | 1.7 +0.1 = 1.8.
    assert router.times == [0.0, pytest.approx(0.6), pytest.approx(1.7)]
    assert trio.current_time() == pytest.approx(1.8)
    assert tries(registry, "invalid") == 3


async def test_answers_from_another_port_are_ignored(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    router = await start(nursery, lambda req: [(0.0, GOOD, True)])
    rc, registry = client(router)
    with pytest.raises(RouterUnavailable) as info:
        await rc.quantify(REQUEST, 1)
    assert info.value.reason == "timeout" and trio.current_time() == 4.5
    assert tries(registry, "ok") == 0


async def test_impostor_first_then_the_router(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    impostor = encode_router_response([RouterAnswer(999, 99.0, 0.0)])
    router = await start(nursery, lambda req: [(0.1, impostor, True), (0.3, GOOD, False)])
    rc, _ = client(router)
    assert await rc.quantify(REQUEST, 1) == (RouterAnswer(2, 5.05, 0.0),)
    assert trio.current_time() == pytest.approx(0.3)


async def test_unresolvable_router_host_is_an_error(autojump_clock: trio.testing.MockClock) -> None:
    registry = CollectorRegistry()
    cfg = router_settings(9, host="router.invalid")
    rc = RouterClient(cfg, build_power_metrics(registry, lambda: 0))
    with pytest.raises(RouterUnavailable) as info:
        await rc.quantify(REQUEST, 1)
    assert info.value.reason == "error" and tries(registry, "error") == 1


# -- demand precedence -------------------------------------------------------------------------


def service(router: FakeRouter | None, *, filter_timeout_s: float = 5.0, **router_kw: Any) -> PowerService:
    settings = Settings()
    settings = attrs.evolve(
        settings,
        router=router_settings(router.port if router else 8888, enabled=router is not None, **router_kw),
        scheduler=attrs.evolve(settings.scheduler, filter_timeout_s=filter_timeout_s),
    )
    registry = CollectorRegistry()
    store = PowerStore(expiry_s=600)
    return PowerService.build(settings, build_power_metrics(registry, store.fresh_node_count), store)


GPU_POD = {"cpu": 1000, "nvidia.com/gpu": 1}


async def test_router_disabled_uses_the_estimate() -> None:
    demand = await service(None).demand_for(PROFILES, GPU_POD)
    assert (demand.source, demand.detail) == ("fallback", "router disabled")
    assert demand.gpu == 5.0 and demand.cpu == pytest.approx(1.6)


async def test_router_answer_is_used_and_cached(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    router = await start(nursery, lambda req: [(0.0, GOOD, False)])
    svc = service(router)
    first = await svc.demand_for(PROFILES, GPU_POD)
    second = await svc.demand_for(PROFILES, GPU_POD)
    assert first == second and first.source == "router" and first.gpu == pytest.approx(5.05)
    assert len(router.seen) == 1
    await trio.sleep(31)  # the cache entry has expired
    await svc.demand_for(PROFILES, GPU_POD)
    assert len(router.seen) == 2


async def test_failed_router_falls_back_then_cools_down(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    router = await start(nursery, never)
    svc = service(router, filter_timeout_s=20.0)  # budget 10 s > the 4.5 s of three tries
    demand = await svc.demand_for(PROFILES, GPU_POD)
    assert demand.source == "fallback" and demand.detail.startswith("router timeout: ")
    assert trio.current_time() == 4.5 and len(router.seen) == 3
    again = await svc.demand_for(PROFILES, GPU_POD)  # cooling down: no new request, no wait
    assert again.detail.startswith("router failed recently") and len(router.seen) == 3
    assert trio.current_time() == 4.5
    await trio.sleep(ROUTER_COOLDOWN_S)
    await svc.demand_for(PROFILES, GPU_POD)
    assert len(router.seen) == 6


async def test_router_wait_is_cut_at_the_verb_budget(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    router = await start(nursery, never)
    svc = service(router, filter_timeout_s=2.0, timeout_s=5.0)  # one try alone outlasts it
    demand = await svc.demand_for(PROFILES, GPU_POD)
    assert trio.current_time() == 1.0  # half of SCHEDULER_FILTER_TIMEOUT
    assert demand.source == "fallback" and "within the verb's budget (1s)" in demand.detail


async def test_invalid_router_answers_fall_back(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    router = await start(nursery, lambda req: [(0.0, b"\x01\x02", False)])
    demand = await service(router).demand_for(PROFILES, GPU_POD)
    assert demand.source == "fallback" and demand.detail.startswith("router invalid: ")


async def test_health_tracks_the_router(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    assert service(None).health()["router"] == "disabled"
    router = await start(nursery, never)
    svc = service(router, filter_timeout_s=20.0)
    await svc.demand_for(PROFILES, GPU_POD)
    assert svc.health()["router"] == (
        "failing: router 127.0.0.1:%d: no answer within UDP_TIMEOUT (1s) (after 3 tries) "
        "(cooling down, next try in 15s)" % router.port
    )
    good = await start(nursery, lambda req: [(0.0, GOOD, False)])
    svc = service(good)
    await svc.demand_for(PROFILES, GPU_POD)
    assert svc.health()["router"] == "ok"
