"""Prometheus /api/v1/query answers -> samples (spec S7; field cases C19, C20)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_sched.codecs.prom import PromResponseError, decode_query_response

C19 = b"""{"status":"success","data":{"resultType":"vector","result":[
 {"metric":{"instance":"node-a"},"value":[1717000000.5,"NaN"]},
 {"metric":{"instance":"node-b"},"value":[1717000000.5,"+Inf"]},
 {"metric":{"instance":"node-c"},"value":[1717000000.5,"-Inf"]},
 {"metric":{"instance":"node-d"},"value":[1717000000.5,"0.42"]}]}}"""


def test_c19_nan_and_infinities_are_unknown_not_zero() -> None:
    result = decode_query_response(C19)
    assert [(s.labels, s.timestamp_s, s.value) for s in result.samples] == [
        ({"instance": "node-d"}, 1717000000.5, 0.42)
    ]
    assert [(s.labels["instance"], s.reason, s.detail) for s in result.skipped] == [
        ("node-a", "nan", "value NaN"),
        ("node-b", "inf", "value +Inf"),
        ("node-c", "inf", "value -Inf"),
    ]
    assert all(math.isfinite(s.value) for s in result.samples)


@pytest.mark.parametrize(
    "body",
    [
        b'{"status":"success","data":{"resultType":"vector","result":[]}}',  # C20 A
        b'{"status":"success","data":{"resultType":"vector","result":null}}',  # C20 B
        b'{"status":"success","data":{"result":null}}',
        b'{"status":"success","data":{"resultType":"matrix","result":null}}',
    ],
)
def test_c20_empty_and_null_results_are_no_series_without_error(body: bytes) -> None:
    result = decode_query_response(body)
    assert result.samples == ()
    assert result.skipped == ()


def test_status_error_raises_with_the_servers_message() -> None:
    body = {"status": "error", "errorType": "bad_data", "error": "1:5: parse error: unexpected '}'"}
    with pytest.raises(PromResponseError) as caught:
        decode_query_response(json.dumps(body))
    assert caught.value.kind == "error"
    assert str(caught.value) == "query failed (bad_data): 1:5: parse error: unexpected '}'"


def test_thanos_timeout_error_shape() -> None:
    body = b'{"status":"error","errorType":"timeout","error":"query timed out in expression evaluation"}'
    with pytest.raises(PromResponseError, match=r"^query failed \(timeout\)") as caught:
        decode_query_response(body)
    assert caught.value.kind == "error"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>502 Bad Gateway</html>", "not JSON"),
        (b"", "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b"[]", "expected a JSON object, got list"),
        (b'{"status":"success"}', "success without a data object"),
        (b'{"status":"success","data":null}', "success without a data object"),
        (b'{"data":{"resultType":"vector","result":[]}}', "unexpected status None"),
        (b'{"status":"success","data":{"resultType":"vector","result":{"a":1}}}', "result: expected a list"),
        (b'{"status":"success","data":{"resultType":"heatmap","result":[1]}}', "unknown resultType 'heatmap'"),
    ],
)
def test_unusable_answers_raise_bad_response(body: bytes, message: str) -> None:
    with pytest.raises(PromResponseError, match=message) as caught:
        decode_query_response(body)
    assert caught.value.kind == "bad_response"


def test_odd_series_are_skipped_one_by_one() -> None:
    body = {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [
                "not-an-object",
                {"metric": {"instance": "a"}},  # no value
                {"metric": {"instance": "b"}, "value": [1.0]},  # one element
                {"metric": {"instance": "c"}, "value": ["x", "0.1"]},  # bad timestamp
                {"metric": {"instance": "d"}, "value": [1.0, "abc"]},  # bad value
                {"metric": {"instance": "e"}, "value": [1.0, True]},  # bool is not a number
                {"metric": None, "value": [1.0, "0.5"]},  # null metric: no labels
                {"metric": {"instance": "f", "bad": 3}, "value": [2, 0.25]},  # numbers accepted
                {"metric": {"instance": "g"}, "histogram": [1.0, {"count": "3"}]},
            ],
        },
    }
    result = decode_query_response(body)
    assert [(s.labels, s.timestamp_s, s.value) for s in result.samples] == [
        ({}, 1.0, 0.5),
        ({"instance": "f"}, 2.0, 0.25),
    ]
    assert [s.reason for s in result.skipped] == ["malformed"] * 7
    assert result.skipped[-1].detail == "native histogram, not a ratio"


def test_matrix_uses_the_newest_point() -> None:
    body = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [
                {"metric": {"node": "n1"}, "values": [[100, "0.1"], [130, "0.3"], [115, "0.2"]]},
                {"metric": {"node": "n2"}, "values": []},
            ],
        },
    }
    result = decode_query_response(body)
    assert [(s.labels, s.timestamp_s, s.value) for s in result.samples] == [({"node": "n1"}, 130.0, 0.3)]
    assert [s.reason for s in result.skipped] == ["malformed"]


def test_scalar_result_has_no_series_to_map() -> None:
    result = decode_query_response(b'{"status":"success","data":{"resultType":"scalar","result":[1717000000,"0.5"]}}')
    assert result.samples == ()
    assert [s.reason for s in result.skipped] == ["no_labels"]


def test_thanos_partial_response_warnings_are_kept() -> None:
    body = {
        "status": "success",
        "warnings": ["No StoreAPIs matched for this query", 7],
        "infos": ["PromQL info: metric might not be a counter"],
        "data": {"resultType": "vector", "result": [{"metric": {"node": "n1"}, "value": [1, "0.5"]}]},
    }
    result = decode_query_response(body)
    assert result.warnings == ("No StoreAPIs matched for this query", "PromQL info: metric might not be a counter")
    assert len(result.samples) == 1


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_any_float_string_decodes_to_a_finite_sample_or_a_skip(value: float) -> None:
    text = "NaN" if math.isnan(value) else ("+Inf" if value == math.inf else "-Inf" if value == -math.inf else repr(value))
    body = {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {"node": "n"}, "value": [1, text]}]}}
    result = decode_query_response(body)
    if math.isfinite(value):
        assert result.samples[0].value == value
    else:
        assert result.samples == ()
        assert result.skipped[0].reason in ("nan", "inf")
