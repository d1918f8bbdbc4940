"""The Event objects edge-sched posts (codecs/events.py)."""

from __future__ import annotations

from edge_sched.codecs.events import MAX_MESSAGE_CHARS, ObjectRef, event_object, pod_ref

AT = 1_764_835_200.25  # 2025-12-04T08:00:00.25Z


def test_event_is_in_its_objects_namespace_and_names_it() -> None:
    event = event_object(pod_ref("shop", "web-0", "u-1"), "Normal", "FollowedPlan", "bound to n2", at=AT, instance="h1")
    assert event["metadata"] == {"name": f"web-0.{int(AT * 1e9):x}", "namespace": "shop"}
    assert event["involvedObject"] == {"apiVersion": "v1", "kind": "Pod", "namespace": "shop", "name": "web-0",
                                       "uid": "u-1"}
    assert (event["type"], event["reason"], event["message"]) == ("Normal", "FollowedPlan", "bound to n2")
    assert event["firstTimestamp"] == event["lastTimestamp"] == "2025-12-04T08:00:00Z"
    assert event["source"] == {"component": "edge-sched"}
    assert (event["reportingComponent"], event["reportingInstance"], event["count"]) == ("edge-sched", "h1", 1)


def test_two_events_a_nanosecond_apart_have_different_names() -> None:
    ref = pod_ref("ns", "p", "u")
    first = event_object(ref, "Normal", "R", "m", at=AT, instance="h")
    second = event_object(ref, "Normal", "R", "m", at=AT + 1e-6, instance="h")
    assert first["metadata"]["name"] != second["metadata"]["name"]


def test_long_names_and_messages_are_cut_to_what_the_api_accepts() -> None:
    event = event_object(pod_ref("ns", "p" * 253, "u"), "Warning", "R", "x" * 5000, at=AT, instance="h")
    assert len(event["metadata"]["name"]) <= 253
    assert len(event["message"]) == MAX_MESSAGE_CHARS
    assert event["message"].endswith("…")


def test_an_object_without_uid_is_named_without_one() -> None:
    event = event_object(ObjectRef("batch/v1", "Job", "ns", "j"), "Warning", "TaskAttemptFailed", "m", at=AT, instance="h")
    assert event["involvedObject"] == {"apiVersion": "batch/v1", "kind": "Job", "namespace": "ns", "name": "j"}
