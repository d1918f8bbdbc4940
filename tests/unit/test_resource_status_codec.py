"""The resource-status wire format (spec S8): every validation error, frames, records."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_sched.codecs import resource_status as wire
from edge_sched.codecs.resource_status import (
    ClusterFacts,
    LiveUsage,
    MessageError,
    PowerFacts,
    Query,
    ReportedFacts,
    StatusReport,
    decode_message,
)

UPDATE: dict[str, Any] = {
    "request_id": "u1",
    "node_id": "node-a",
    "status_id": "s-1",
    "cpu_status": "busy",
    "cpu_usage": 91.5,
    "gpu_status": "in_use",
    "gpu_usage": 40,
    "memory_status": "available",
    "memory_usage": 30.25,
    "disk_status": "available",
    "disk_usage": 12,
    "network_status": "offline",
    "network_usage": 0,
    "overall_load": 70,
}


def error_of(message: str | bytes | dict[str, Any]) -> MessageError:
    text = json.dumps(message) if isinstance(message, dict) else message
    with pytest.raises(MessageError) as caught:
        decode_message(text)
    return caught.value


def test_query_all_and_one_node() -> None:
    assert decode_message('{"request_id": "q1", "query": "all"}') == Query("q1", None)
    assert decode_message('{"request_id": 7, "query": "node-a"}') == Query(7, "node-a")
    assert decode_message('{"type": "query", "request_id": "q", "query": "n"}') == Query("q", "n")


def test_update_decodes_every_field() -> None:
    report = decode_message(json.dumps(UPDATE))
    assert isinstance(report, StatusReport)
    assert (report.request_id, report.node_id, report.status_id) == ("u1", "node-a", "s-1")
    assert report.statuses == {"cpu": "busy", "gpu": "in_use", "memory": "available", "disk": "available",
                               "network": "offline"}
    assert report.usages == {"cpu": 91.5, "gpu": 40.0, "memory": 30.25, "disk": 12.0, "network": 0.0}
    assert report.overall_load == 70.0
    assert report.usage_ratio("memory") == pytest.approx(0.3025)


def test_bounds_are_inclusive() -> None:
    low = decode_message(json.dumps({**UPDATE, "cpu_usage": 0, "overall_load": 100}))
    assert isinstance(low, StatusReport)
    assert (low.usages["cpu"], low.overall_load) == (0.0, 100.0)


@pytest.mark.parametrize("field", wire.STATUS_FIELDS)
def test_each_status_field_is_checked(field: str) -> None:
    err = error_of({**UPDATE, field: "overloaded"})
    assert str(err) == (
        f'{field}: "overloaded" is not a status, expected one of available, in_use, busy, offline, error'
    )
    assert err.request_id == "u1" and err.reason == "invalid_message"


@pytest.mark.parametrize("field", wire.USAGE_FIELDS)
@pytest.mark.parametrize(
    ("value", "why"),
    [
        (100.5, "100.5 is out of range, expected a percentage 0-100"),
        (-1, "-1 is out of range, expected a percentage 0-100"),
        ("50", '"50" is not a number, expected a percentage 0-100'),
        (True, "true is not a number, expected a percentage 0-100"),
        (None, "null is not a number, expected a percentage 0-100"),
    ],
)
def test_each_usage_field_is_checked(field: str, value: Any, why: str) -> None:
    assert str(error_of({**UPDATE, field: value})) == f"{field}: {why}"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused_by_name(literal: str) -> None:
    text = json.dumps(UPDATE).replace('"cpu_usage": 91.5', f'"cpu_usage": {literal}')
    assert str(error_of(text)) == f"cpu_usage: {literal} is not allowed, expected a number 0-100"


def test_a_number_too_large_for_a_float_is_refused() -> None:
    text = json.dumps(UPDATE).replace('"overall_load": 70', '"overall_load": 1e999')
    assert str(error_of(text)) == "overall_load: Infinity is not a finite number, expected 0-100"


def test_an_integer_too_large_for_a_float_is_out_of_range() -> None:
    text = json.dumps(UPDATE).replace('"overall_load": 70', '"overall_load": 1' + "0" * 400)
    assert str(error_of(text)) == "overall_load: 1000000000000000000000000000000000000... is out of range, expected a percentage 0-100"


@pytest.mark.parametrize("field", [f for f in wire.UPDATE_FIELDS if f != "request_id"])
def test_each_missing_update_field_is_named(field: str) -> None:
    body = {k: v for k, v in UPDATE.items() if k != field}
    if field == "node_id":  # without node_id the message is not an update at all
        assert "needs \"query\" (a query) or \"node_id\"" in str(error_of(body))
    else:
        assert str(error_of(body)).startswith(f"{field}: missing")


def test_missing_request_id() -> None:
    err = error_of({"query": "all"})
    assert str(err) == "request_id: missing, every message needs a request_id (string or integer)"
    assert err.request_id is None


@pytest.mark.parametrize("value", ["", None, 1.5, True, [], "x" * 257])
def test_bad_request_id(value: Any) -> None:
    err = error_of({"request_id": value, "query": "all"})
    assert str(err).startswith("request_id: ") and err.request_id is None


def test_all_problems_are_listed_and_the_request_id_kept() -> None:
    err = error_of({**UPDATE, "cpu_usage": 101, "disk_status": "full", "node_id": ""})
    assert err.request_id == "u1"
    assert str(err).split("; ") == [
        'node_id: "" is not a node name (non-empty string, at most 253 characters)',
        "cpu_usage: 101 is out of range, expected a percentage 0-100",
        'disk_status: "full" is not a status, expected one of available, in_use, busy, offline, error',
    ]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("not json", "not JSON (Expecting value at line 1 column 1); send one JSON object"),
        ("", "not JSON (Expecting value at line 1 column 1); send one JSON object"),
        ('{"request_id": "q", "query": "all"', "not JSON (Expecting ',' delimiter at line 1 column 35); send one JSON object"),
        ("[" * 100_000, "JSON nested too deeply; send one flat JSON object"),
        ('{"request_id": ' + "1" * 5000 + "}", "not JSON (a number has more than 4300 digits); send one JSON object"),
        ('{"request_id": "a", "request_id": "b", "query": "all"}', "duplicate field 'request_id'; each field may appear once"),
    ],
)
def test_not_json(text: str, why: str) -> None:
    err = error_of(text)
    assert (str(err), err.reason) == (why, "invalid_json")


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ([1, 2], "expected a JSON object, got a list"),
        ("text", 'expected a JSON object, got "text"'),
        ({"request_id": "q"}, 'message needs "query" (a query) or "node_id" (a status update)'),
        ({"request_id": "q", "query": "all", "node_id": "n"}, 'message has both "query" and "node_id"'),
        ({"request_id": "q", "query": ""}, 'query: "" is not a node name'),
        ({"request_id": "q", "query": 5}, "query: 5 is not a node name"),
        ({"request_id": "q", "query": "all", "verbose": True}, "unknown field(s) verbose (a query has"),
        ({"request_id": "q", "query": "all", "type": "update"}, 'type: "update" does not match the fields of a query'),
        ({**UPDATE, "cpu_usge": 5}, "unknown field(s) cpu_usge (an update"),
        ({**UPDATE, "status_id": True}, "status_id: true is not a non-empty string or an integer"),
    ],
)
def test_message_shape(body: Any, why: str) -> None:
    assert why in str(error_of(json.dumps(body)))


def test_binary_frames_are_refused() -> None:
    assert str(error_of(json.dumps(UPDATE).encode())) == "binary frame; send JSON as a text frame"


def test_frames_are_compact_json_with_the_request_id() -> None:
    report = decode_message(json.dumps(UPDATE))
    assert isinstance(report, StatusReport)
    assert json.loads(wire.update_ack(report)) == {
        "request_id": "u1", "type": "update_ack", "success": True, "node_id": "node-a", "status_id": "s-1",
    }
    assert json.loads(wire.error_frame(None, "why")) == {"request_id": None, "type": "error", "error": "why"}
    assert json.loads(wire.query_result("q", {"a": {}}, 5.0)) == {
        "request_id": "q", "type": "query_result", "timestamp": 5.0, "nodes": {"a": {}},
    }
    assert json.loads(wire.status_update(6.0, {})) == {"type": "status_update", "timestamp": 6.0, "nodes": {}}


def test_nan_never_reaches_the_wire() -> None:
    text = wire.status_update(1.0, {"a": {"x": math.nan, "y": [math.inf, 1.5], "z": {"w": -math.inf}}})
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text)["nodes"]["a"] == {"x": None, "y": [None, 1.5], "z": {"w": None}}


def test_node_record_with_every_section() -> None:
    report = decode_message(json.dumps(UPDATE))
    assert isinstance(report, StatusReport)
    record = wire.node_record(
        "node-a",
        cluster=ClusterFacts(True, False, {"cpu": 4000, "memory": 8 << 30, "pods": 110}, {"cpu": 1500}, 3,
                             ("10.0.0.5",), "zone-1"),
        usage=LiveUsage("prometheus", 0.4213, math.nan, "memory: no fresh sample"),
        power=[PowerFacts("cpu", "GHz", 2, 5.0, 2.5, 50.0, 16.0, 8.0, 9, 1.234)],
        reported=ReportedFacts(report, 1_700_000_000.5, 2.25),
    )
    assert record == {
        "name": "node-a",
        "sources": ["cluster", "computing_power", "reported"],
        "cluster": {"ready": True, "unschedulable": False, "allocatable": {"cpu": 4000, "memory": 8 << 30, "pods": 110},
                    "requested": {"cpu": 1500}, "pod_count": 3, "addresses": ["10.0.0.5"], "zone": "zone-1"},
        "usage": {"source": "prometheus", "cpu_pct": 42.13, "memory_pct": None, "note": "memory: no fresh sample"},
        "computing_power": {"cpu": {"unit": "GHz", "units": 2, "total": 5.0, "available": 2.5, "average_load_pct": 50.0,
                                    "total_memory_gib": 16.0, "available_memory_gib": 8.0, "report_id": 9,
                                    "age_s": 1.2}},
        "reported": {"status_id": "s-1", "cpu_status": "busy", "gpu_status": "in_use", "memory_status": "available",
                     "disk_status": "available", "network_status": "offline", "cpu_usage": 91.5, "gpu_usage": 40.0,
                     "memory_usage": 30.25, "disk_usage": 12.0, "network_usage": 0.0, "overall_load": 70.0,
                     "reported_at": 1_700_000_000.5, "age_s": 2.2},
    }
    json.dumps(record, allow_nan=False)


def test_node_record_with_nothing_known() -> None:
    record = wire.node_record("x", cluster=None, usage=None, power=[], reported=None)
    assert record == {"name": "x", "sources": [], "cluster": None, "usage": None, "computing_power": None,
                      "reported": None}


percent = st.one_of(st.integers(0, 100), st.floats(0, 100, allow_nan=False))
ids = st.one_of(st.text(min_size=1, max_size=40), st.integers(-(2**53), 2**53))


@given(
    request_id=ids,
    status_id=ids,
    node=st.text(min_size=1, max_size=60).filter(lambda s: s.strip() != ""),
    statuses=st.lists(st.sampled_from(wire.STATUS_WORDS), min_size=5, max_size=5),
    usages=st.lists(percent, min_size=6, max_size=6),
)
def test_valid_updates_round_trip(
    request_id: str | int, status_id: str | int, node: str, statuses: list[str], usages: list[float]
) -> None:
    body: dict[str, Any] = {"request_id": request_id, "node_id": node, "status_id": status_id}
    body.update(zip(wire.STATUS_FIELDS, statuses, strict=True))
    body.update(zip(wire.USAGE_FIELDS, usages, strict=True))
    report = decode_message(json.dumps(body))
    assert isinstance(report, StatusReport)
    assert (report.request_id, report.node_id, report.status_id) == (request_id, node, status_id)
    assert [report.statuses[r] for r in wire.RESOURCES] == statuses
    assert [report.usages[r] for r in wire.RESOURCES] + [report.overall_load] == [float(u) for u in usages]
    ack = json.loads(wire.update_ack(report))
    assert (ack["request_id"], ack["status_id"]) == (request_id, status_id)


@given(st.text(max_size=300))
def test_any_text_decodes_or_raises_message_error(text: str) -> None:
    try:
        decode_message(text)
    except MessageError as exc:
        json.loads(wire.error_frame(exc.request_id, str(exc)))
