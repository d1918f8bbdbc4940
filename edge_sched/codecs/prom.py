"""Prometheus / Thanos instant-query answers (`GET /api/v1/query`) -> samples.

Sans-I/O: `decode_query_response(body)` takes the raw body bytes (or already decoded
JSON) and returns every usable sample plus a note for every series it had to leave
out. It never raises on an odd series; it raises `PromResponseError` only when the
answer as a whole says nothing (not JSON, `status: error`, no `data`).

What "usable" means (spec S7, field cases C19/C20):

- Values arrive as strings (`"0.42"`, `"NaN"`, `"+Inf"`); numbers are accepted too.
  NaN and +/-Inf are *unknown*, not 0: the series is skipped with a note, so a node
  whose ratio query divided by zero never looks idle and never looks overloaded.
- `result: []` and `result: null` are both "no series" (no error, no crash).
- `vector` is the normal shape; `matrix` (a range selector in the query) uses the
  newest point of each series; `scalar`/`string` carry no labels and map to no node.
- Timestamps are float unix seconds, kept so callers can drop stale series.
- Thanos `warnings` (partial responses) and Prometheus 3 `infos` are passed on.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import attrs


class PromResponseError(ValueError):
    """The answer as a whole is unusable; `kind` is a short label for metrics.

    Kinds: `error` (the server said `status: error`, e.g. a bad query or a timeout
    inside Prometheus), `bad_response` (not JSON, or not the API's shape).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@attrs.frozen
class Sample:
    """One series' value at one time. `value` is always finite."""

    labels: Mapping[str, str]
    timestamp_s: float
    value: float


@attrs.frozen
class SkippedSeries:
    """A series left out, and why (`nan`, `inf`, `malformed`, `no_labels`)."""

    labels: Mapping[str, str]
    reason: str
    detail: str = ""


@attrs.frozen
class QueryResult:
    """The usable samples of one answer, what was left out, and server warnings."""

    result_type: str
    samples: tuple[Sample, ...] = ()
    skipped: tuple[SkippedSeries, ...] = ()
    warnings: tuple[str, ...] = ()


def decode_query_response(body: bytes | str | Any) -> QueryResult:
    """Decode one `/api/v1/query` answer.

    Args:
        body: the response body as bytes/str, or JSON already decoded.

    Returns:
        The samples, skipped series and warnings.

    Raises:
        PromResponseError: not JSON, `status` is not `success`, or no `data` object.
    """
    doc = _load(body)
    if not isinstance(doc, Mapping):
        raise PromResponseError("bad_response", f"expected a JSON object, got {type(doc).__name__}")
    status = doc.get("status")
    if status == "error":
        kind = doc.get("errorType") or "error"
        raise PromResponseError("error", f"query failed ({kind}): {_text(doc.get('error'))}")
    if status != "success":
        raise PromResponseError("bad_response", f"unexpected status {status!r}")
    data = doc.get("data")
    if not isinstance(data, Mapping):
        raise PromResponseError("bad_response", "success without a data object")
    warnings = _strings(doc.get("warnings")) + _strings(doc.get("infos"))
    result_type = data.get("resultType")
    result = data.get("result")
    if result_type == "vector":
        samples, skipped = _series(result, "value")
    elif result_type == "matrix":
        samples, skipped = _series(result, "values")
    elif result_type in ("scalar", "string"):
        # `[ts, "v"]` without labels: nothing to map to a node.
        samples = []
        skipped = [SkippedSeries({}, "no_labels", f"{result_type} result has no series labels")]
    elif result is None or result == []:
        samples, skipped = [], []
    else:
        raise PromResponseError("bad_response", f"unknown resultType {result_type!r}")
    return QueryResult(str(result_type), tuple(samples), tuple(skipped), tuple(warnings))


def _load(body: bytes | str | Any) -> Any:
    if isinstance(body, bytes | bytearray | str):
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise PromResponseError("bad_response", f"not JSON: {exc}") from exc
    return body


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, str)]


def _labels(raw: Any) -> dict[str, str]:
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): v for k, v in raw.items() if isinstance(v, str)}


def _series(result: Any, key: str) -> tuple[list[Sample], list[SkippedSeries]]:
    samples: list[Sample] = []
    skipped: list[SkippedSeries] = []
    if result is None:  # some versions answer `null` for "nothing matched"
        return samples, skipped
    if not isinstance(result, list):
        raise PromResponseError("bad_response", f"result: expected a list, got {type(result).__name__}")
    for item in result:
        if not isinstance(item, Mapping):
            skipped.append(SkippedSeries({}, "malformed", f"series is {type(item).__name__}"))
            continue
        labels = _labels(item.get("metric"))
        point = item.get(key)
        if key == "values":
            # A range selector: the newest point stands for the series.
            points = [p for p in (point if isinstance(point, list) else []) if _point(p) is not None]
            decoded = max((_point(p) for p in points), key=_timestamp, default=None)
        else:
            decoded = _point(point)
        if point is None and "histogram" in item:
            skipped.append(SkippedSeries(labels, "malformed", "native histogram, not a ratio"))
            continue
        if decoded is None:
            skipped.append(SkippedSeries(labels, "malformed", f"{key}: {point!r:.80}"))
            continue
        timestamp, raw = decoded
        value = _number(raw)
        if value is None:
            skipped.append(SkippedSeries(labels, "malformed", f"value {raw!r:.40} is not a number"))
        elif math.isnan(value):
            skipped.append(SkippedSeries(labels, "nan", "value NaN"))
        elif math.isinf(value):
            skipped.append(SkippedSeries(labels, "inf", f"value {'+' if value > 0 else '-'}Inf"))
        else:
            samples.append(Sample(labels, timestamp, value))
    return samples, skipped


def _point(point: Any) -> tuple[float, Any] | None:
    """`[ts, value]` with a numeric, finite timestamp, else None."""
    if not isinstance(point, list | tuple) or len(point) != 2:
        return None
    ts = _number(point[0])
    if ts is None or not math.isfinite(ts):
        return None
    return ts, point[1]


def _timestamp(point: tuple[float, Any] | None) -> float:
    return point[0] if point is not None else -math.inf


def _number(raw: Any) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        try:
            # float() reads "NaN", "+Inf", "-Inf" the way Prometheus writes them.
            return float(raw)
        except ValueError:
            return None
    return None
