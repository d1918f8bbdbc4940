"""The usage store: fallback chain, per-node source, health, damping (spec S7)."""

from __future__ import annotations

import math

import attrs
import pytest
from prometheus_client import generate_latest

from edge_sched.core.load import (
    METRICS_API,
    PROMETHEUS,
    REQUESTS,
    STATUS_REPORT,
    UDP_REPORT,
    Reading,
    SeriesIndex,
    SourceReadings,
)
from edge_sched.core.model import NodeInfo
from edge_sched.runtime.metrics import build_metrics
from edge_sched.runtime.power_store import ReportLoad
from edge_sched.runtime.usage import UsageStore

GI = 1024**3
A = NodeInfo("a", {"cpu": 4000, "memory": 8 * GI})
B = NodeInfo("b", {"cpu": 4000, "memory": 8 * GI})
C = NodeInfo("c", {"cpu": 4000, "memory": 8 * GI})


@attrs.define
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


def of(**values: float) -> SeriesIndex:
    return SeriesIndex.of_nodes({node: Reading(v, 100.0) for node, v in values.items()})


def load(cpu: float, memory: float, at: float = 100.0) -> ReportLoad:
    """What `PowerStore.usage` answers for a node that reported."""
    return ReportLoad(Reading(cpu, at), Reading(memory, at))


NO_LOAD = ReportLoad()


def store(**kw: object) -> tuple[UsageStore, Clock]:
    clock = Clock()
    usage = UsageStore(clock=clock, **kw)  # type: ignore[arg-type]
    usage.enable(PROMETHEUS, 30.0)
    usage.enable(METRICS_API, 30.0)
    return usage, clock


def test_fallback_chain_prometheus_then_metrics_api_then_reports_then_requests() -> None:
    usage, clock = store()
    usage.publish(PROMETHEUS, "cpu", of(a=0.9))
    usage.publish(PROMETHEUS, "memory", of(a=0.5))
    usage.publish(METRICS_API, "cpu", of(a=0.2, b=0.3))
    usage.publish(METRICS_API, "memory", of(a=0.2, b=0.4))
    reports = {"a": load(0.7, 0.7), "b": load(0.6, 0.6), "c": load(0.15, 0.25)}
    usage.attach_reports(lambda: lambda name: reports.get(name, NO_LOAD), math.inf)
    assert usage.sources_by_node([A, B, C]) == {"a": PROMETHEUS, "b": METRICS_API, "c": UDP_REPORT}
    c = usage.usage(C)
    assert (c.source, c.cpu, c.memory) == (UDP_REPORT, 0.15, 0.25)
    # Prometheus stops answering: after two poll periods `a` falls to metrics.k8s.io.
    clock.now = 131.0
    usage.fail(PROMETHEUS, "cpu query unreachable: ConnectError", "cpu")
    # metrics.k8s.io is as old: both stale, reports answer.
    assert usage.sources_by_node([A, B, C]) == {"a": UDP_REPORT, "b": UDP_REPORT, "c": UDP_REPORT}
    usage.publish(METRICS_API, "cpu", of(a=0.21, b=0.31))  # stamped 100 by `of`: still stale
    usage.publish(METRICS_API, "cpu", SeriesIndex.of_nodes({"a": Reading(0.22, 131.0)}))
    a = usage.usage(A)
    assert (a.source, a.cpu, a.memory) == (METRICS_API, 0.22, None)
    reports.clear()
    assert usage.sources_by_node([B]) == {"b": REQUESTS}


def test_without_any_source_every_node_uses_requests() -> None:
    usage = UsageStore(clock=Clock())
    assert usage.usage(A).source == REQUESTS
    assert usage.source_status() == {
        PROMETHEUS: "disabled", METRICS_API: "disabled", UDP_REPORT: "disabled", STATUS_REPORT: "disabled",
    }


def test_health_names_the_source_per_node_and_each_sources_state() -> None:
    usage, clock = store()
    usage.publish(PROMETHEUS, "cpu", of(a=0.9))
    usage.fail(METRICS_API, "not served (no metrics-server / metrics.k8s.io APIService)")
    clock.now = 105.0
    health = usage.health([A, B])
    assert health == {
        "source": "mixed",
        "sources": {
            PROMETHEUS: "ok (last poll 5s ago)",
            METRICS_API: "failing: not served (no metrics-server / metrics.k8s.io APIService) (never answered)",
            UDP_REPORT: "disabled",
            STATUS_REPORT: "disabled",
        },
        "nodes_by_source": {PROMETHEUS: 1, REQUESTS: 1},
        "nodes": {"a": PROMETHEUS, "b": REQUESTS},
    }
    clock.now = 140.0
    usage.fail(PROMETHEUS, "cpu query timeout: no answer within 5s", "cpu")
    health = usage.health([A, B])
    assert health["source"] == REQUESTS
    assert health["sources"][PROMETHEUS] == "failing: cpu query timeout: no answer within 5s (last success 40s ago)"
    # A success of the memory query does not hide the failing CPU query.
    usage.publish(PROMETHEUS, "memory", of(a=0.5))
    assert usage.health([A])["sources"][PROMETHEUS].startswith("failing: cpu query timeout")


def test_enable_again_keeps_readings_of_a_restarted_poller() -> None:
    usage, _ = store()
    usage.publish(PROMETHEUS, "cpu", of(a=0.9))
    usage.enable(PROMETHEUS, 30.0)
    assert usage.usage(A).cpu == 0.9


def test_damping_raises_a_node_that_just_got_pods_until_the_window_passed() -> None:
    usage, clock = store(damping_settle_s=300.0)
    usage.publish(PROMETHEUS, "cpu", of(a=0.5, b=0.5))
    usage.publish(PROMETHEUS, "memory", of(a=0.5, b=0.5))
    clock.now = 101.0
    usage.note_placement("a", {"cpu": 1000, "memory": 2 * GI})
    a, b = usage.usage(A), usage.usage(B)
    assert (a.cpu, a.memory) == (pytest.approx(0.75), pytest.approx(0.75))
    assert (b.cpu, b.memory) == (0.5, 0.5)
    # A sample taken 300 s after the placement shows it already: no more damping.
    clock.now = 402.0
    usage.publish(PROMETHEUS, "cpu", SeriesIndex.of_nodes({"a": Reading(0.6, 400.5)}))
    assert usage.usage(A).cpu == pytest.approx(0.85)  # 400.5 - 300 < 101: still counted
    usage.publish(PROMETHEUS, "cpu", SeriesIndex.of_nodes({"a": Reading(0.6, 402.0)}))
    assert usage.usage(A).cpu == 0.6


def test_damping_off_ignores_placements() -> None:
    usage, clock = store()
    usage.publish(PROMETHEUS, "cpu", of(a=0.5))
    usage.note_placement("a", {"cpu": 1000})
    assert usage.usage(A).cpu == 0.5


def test_load_source_gauge_is_computed_at_scrape_time() -> None:
    usage, clock = store()
    usage.publish(PROMETHEUS, "cpu", of(a=0.9))
    metrics = build_metrics()
    metrics.registry.register(usage.collector(lambda: [A, B]))
    sample = metrics.registry.get_sample_value
    assert sample("edge_sched_load_source", {"node": "a", "source": PROMETHEUS}) == 1.0
    assert sample("edge_sched_load_source", {"node": "b", "source": REQUESTS}) == 1.0
    clock.now = 200.0
    assert sample("edge_sched_load_source", {"node": "a", "source": PROMETHEUS}) is None
    assert sample("edge_sched_load_source", {"node": "a", "source": REQUESTS}) == 1.0
    assert b"edge_sched_load_source{" in generate_latest(metrics.registry)


def test_other_attached_sources_come_after_the_s7_chain() -> None:
    usage, _ = store()
    usage.attach_reports(lambda: lambda name: load(0.4, 0.4) if name == "a" else NO_LOAD, math.inf)
    usage.attach("status-report", lambda: SourceReadings("status-report", 60.0, cpu=of(a=0.9, b=0.2)))
    assert usage.sources_by_node([A, B]) == {"a": UDP_REPORT, "b": "status-report"}
    assert list(usage.source_status()) == [PROMETHEUS, METRICS_API, UDP_REPORT, "status-report"]
    assert usage.source_status()["status-report"] == "attached"


def test_a_reader_answers_like_usage_as_of_when_it_was_made() -> None:
    usage, clock = store()
    usage.publish(PROMETHEUS, "cpu", of(a=0.9))
    usage.publish(METRICS_API, "cpu", of(a=0.2))
    read = usage.reader()
    assert read(A) == usage.usage(A)
    clock.now += 31  # Prometheus's reading is stale now, but not for the reader made before
    assert (read(A).source, usage.usage(A).source) == (PROMETHEUS, REQUESTS)


def test_a_reader_keeps_a_report_answer_while_the_power_store_hands_out_the_same_one() -> None:
    usage, clock = store(damping_settle_s=300.0)
    reports = {"a": load(0.4, 0.5)}
    asked: list[str] = []

    def usage_of(name: str) -> ReportLoad:
        asked.append(name)
        return reports.get(name, NO_LOAD)

    usage.attach_reports(lambda: usage_of, math.inf)
    first = usage.reader()(A)
    assert (first.source, first.cpu, first.memory) == (UDP_REPORT, 0.4, 0.5)
    asked.clear()
    assert usage.reader()(A) is first and asked == ["a"]  # one identity check, no resolution
    reports["a"] = load(0.8, 0.5, at=101.0)  # the node reported again
    assert usage.reader()(A).cpu == 0.8
    again = usage.reader()(A)
    usage.note_placement("a", {"cpu": 1000})  # damping: a new placement is a new answer
    damped = usage.reader()(A)
    assert damped is not again and damped.cpu == pytest.approx(1.0)
    del reports["a"]  # the report expired
    assert usage.reader()(A).source == REQUESTS
