"""2,000 generated bodies for every POST entrance of one standalone daemon (spec S5, S6.5,
S10, S11): the four extender verbs, computing-power quantify, batch plans and the task-plan
dry run.

Proves, per entrance: no answer is a 5xx; every non-2xx answer is a JSON object whose
`Error`/`error` names the problem; no body carries traceback text; the extender counter
`edge_sched_extender_requests_total{verb,outcome}` rose by exactly the number of 400s
(`bad_request`) and 200s (`ok`); stored state is unchanged: a plan stored before the run is
byte-identical after it, no rejected body left a plan for its pod, no decision or task plan
was recorded, the daemon is healthy.

Bodies come from a seeded generator: structural mutations of a valid body (keys removed,
values replaced by junk of another type, keys re-cased or added, values wrapped, deep
nesting, huge numbers and strings) and text-level damage (truncation, stray bytes, bad
UTF-8, non-objects, NaN, 100,000-deep arrays, >4,300-digit integers). Found with it and
fixed in edge_sched: the last two were HTTP 500s (RecursionError / ValueError from json.loads).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from edge_sched.core.taskplan import example_plan
from tests.cluster.daemon import EdgeSchedDaemon
from tests.faults.helpers import json_error, metric_total, post_all
from tests.integration.resource_status_helpers import start_daemon
from tests.integration.test_daemon_standalone import NODES, POD

SEED = 4242
BODIES = 2_000
CONCURRENCY = 8
NS = "fz"


def pod(name: str) -> dict[str, Any]:
    doc = copy.deepcopy(POD)
    doc["metadata"].update(name=name, namespace=NS, uid=f"uid-{name}")
    return doc


# entrance -> (path, a valid body whose pod is named n)
ENTRANCES: dict[str, tuple[str, Callable[[int], Any]]] = {
    "filter": ("/filter", lambda n: {"Pod": pod(n), "Nodes": NODES, "NodeNames": None}),
    "prioritize": ("/prioritize", lambda n: {"Pod": pod(n), "Nodes": NODES}),
    "bind": ("/bind", lambda n: {"PodName": n, "PodNamespace": NS, "PodUID": f"uid-{n}", "Node": "big"}),
    "preempt": ("/preempt", lambda n: {
        "Pod": pod(n),
        "NodeNameToVictims": {"big": {"Pods": [pod("victim")], "NumPDBViolations": 0}},
        "NodeNameToMetaVictims": {"big": {"Pods": [{"UID": "uid-victim"}], "NumPDBViolations": 0}},
    }),
    "quantify": ("/computing-power/quantify", lambda n: {"containers": pod(n)["spec"]["containers"]}),
    "batch-plans": ("/scheduler/plans", lambda n: {
        "Pods": [pod(n), pod(f"{n}-b")], "Nodes": NODES, "algorithm": "default",
    }),
    "task-plans": ("/task-planning/plans?deploy=false", lambda n: {**example_plan(), "plan_name": n}),
}
VERBS = ("filter", "prioritize", "bind", "preempt")

JUNK: list[Any] = [
    None, True, 0, -1, 1.5, 2**70, -(2**63), 1e308, "", "x" * 10_000, "1Gi", "-5", "NaN", "\u0000", "\ud800",
    [], [None], {}, {"": None}, {"metadata": 7}, {"items": None}, {"items": [1, "a"]},
    [[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]],
]
RAW_JUNK: list[bytes] = [
    b"", b" ", b"null", b"[]", b"0", b'"Pod"', b"{", b"}", b"\xff\xfe\x00", b"NaN", b'{"Pod": NaN}',
    b'{"Pod": Infinity}', b"[" * 100_000, b"{\"a\":" * 50_000, b'{"Pod": ' + b"9" * 5_000 + b"}",
    b'{"Pod": {}, "Pod": 3}', b"\xef\xbb\xbf{}", "{\"Pod\": \"\u2028\"}".encode(), b"\x00" * 64,
]


def _paths(value: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into `value` up to 12 levels (deep nests made by a mutation are not entered)."""
    yield here
    if len(here) >= 12:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*here, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*here, i))


def _mutate_tree(rng: random.Random, doc: Any) -> Any:
    paths = [p for p in _paths(doc) if p]
    if not paths:
        return rng.choice(JUNK)
    path = rng.choice(paths)
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    key = path[-1]
    op = rng.randrange(6)
    if op == 0:  # remove
        del parent[key]
    elif op == 1:  # junk of another type
        parent[key] = copy.deepcopy(rng.choice(JUNK))
    elif op == 2 and isinstance(parent, dict):  # re-cased key (legal for the verbs) or a new key
        parent[key.swapcase() if rng.random() < 0.5 else key + "_x"] = parent.pop(key)
    elif op == 3:  # wrapped
        parent[key] = [parent[key]] if rng.random() < 0.5 else {"v": parent[key]}
    elif op == 4:  # deep nesting
        value = parent[key]
        for _ in range(rng.randint(20, 120)):
            value = [value]
        parent[key] = value
    else:  # a neighbour's value
        parent[key] = copy.deepcopy(parent[rng.choice(list(parent.keys()) if isinstance(parent, dict) else range(len(parent)))])
    return doc


def _mutate_text(rng: random.Random, raw: bytes) -> bytes:
    op = rng.randrange(5)
    if op == 0:
        return raw[: rng.randrange(len(raw))]
    if op == 1:
        at = rng.randrange(len(raw))
        return raw[:at] + rng.randbytes(rng.randint(1, 8)) + raw[at:]
    if op == 2:
        at = rng.randrange(len(raw))
        return raw[:at] + rng.choice((b"\xff", b"\xc3\x28", b"\xed\xa0\x80")) + raw[at + 1 :]
    if op == 3:
        return rng.choice(RAW_JUNK)
    return rng.randbytes(rng.randrange(1, 512))


def generate(entrance: str, seed: int, count: int) -> list[bytes]:
    rng = random.Random(f"{seed}-{entrance}")
    _, valid = ENTRANCES[entrance]
    bodies = []
    for i in range(count):
        doc = copy.deepcopy(valid(f"{entrance}-{i}"))  # NODES and POD are shared module constants
        if rng.random() < 0.75:
            for _ in range(rng.randint(1, 3)):
                doc = _mutate_tree(rng, doc)
            raw = json.dumps(doc).encode()
        else:
            raw = _mutate_text(rng, json.dumps(doc).encode())
        bodies.append(raw)
    return bodies


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeSchedDaemon]:
    tmp = tmp_path_factory.mktemp("malformed-http")
    # The router is off (quantify answers from the S6.4 estimate without waiting on UDP);
    # the body limit stays at its 64 MiB default, so 100,000-deep arrays reach the decoder.
    d = start_daemon(tmp, COMPUTING_ROUTER_ENABLED="false", MONITOR_API_URL="")
    yield d
    d.stop()


def test_the_generator_is_seeded() -> None:
    assert generate("filter", SEED, 50) == generate("filter", SEED, 50)
    assert generate("filter", SEED, 50) != generate("filter", SEED + 1, 50)


def _state(http: httpx.Client) -> dict[str, Any]:
    return {
        "plan": http.get(f"/scheduler/plan/{NS}/keeper").json(),
        "scores": http.get(f"/scheduler/scores/{NS}/keeper").json(),
        "decisions": http.get("/scheduler/decisions").json(),
        "task_plans": http.get("/task-planning/plans").json(),
        "power": http.get("/computing-power/nodes").json()["entries"],
    }


@pytest.mark.parametrize("entrance", list(ENTRANCES))
async def test_generated_bodies_never_get_a_5xx_and_change_nothing(daemon: EdgeSchedDaemon, entrance: str) -> None:
    path, _ = ENTRANCES[entrance]
    bodies = generate(entrance, SEED, BODIES)
    with httpx.Client(base_url=daemon.api_url, timeout=30) as http:
        keeper = {"Pod": pod("keeper"), "Nodes": NODES}
        assert http.post("/filter", json=keeper).status_code == 200
        assert http.post("/prioritize", json=keeper).status_code == 200
        before = _state(http)
        counts_before = {o: metric_total(daemon, "edge_sched_extender_requests_total", verb=entrance, outcome=o)
                         for o in ("ok", "bad_request")}

        # Each request is given 60 s: the slowest legitimate body (a 64 KiB batch plan) takes
        # milliseconds; the bound only turns a hang into a failure.
        async with httpx.AsyncClient(base_url=daemon.api_url, timeout=60,
                                     limits=httpx.Limits(max_connections=CONCURRENCY)) as client:
            answers = await post_all(client, path, bodies, concurrency=CONCURRENCY)

        statuses = [r.status_code for r, _ in answers]
        assert len(answers) == BODIES
        assert max(statuses) < 500, [(s, r.text[:200]) for s, (r, _) in zip(statuses, answers) if s >= 500][:5]
        rejected = [i for i, s in enumerate(statuses) if not 200 <= s < 300]
        assert len(rejected) >= BODIES // 4, "most mutations should be refused"
        for i in rejected:
            message = json_error(answers[i][0])
            assert not message.startswith("internal error"), message
        for response, _ in answers:
            assert "Traceback" not in response.text and 'File "' not in response.text
        assert set(statuses) <= {200, 201, 400, 404, 409, 413, 415}, sorted(set(statuses))

        after = _state(http)
        assert after == before
        if entrance in ("prioritize", "batch-plans"):  # the entrances that store plans
            for i in rejected:
                assert http.get(f"/scheduler/plan/{NS}/{entrance}-{i}").status_code == 404, i
        if entrance in VERBS:
            ok = statuses.count(200)
            bad = statuses.count(400)
            assert ok + bad == BODIES
            got_ok = metric_total(daemon, "edge_sched_extender_requests_total", verb=entrance, outcome="ok")
            got_bad = metric_total(daemon, "edge_sched_extender_requests_total", verb=entrance, outcome="bad_request")
            assert (got_ok - counts_before["ok"], got_bad - counts_before["bad_request"]) == (ok, bad)
        assert http.get("/scheduler/health").status_code == 200
    assert daemon.alive
    log = daemon.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "unhandled error" not in log
