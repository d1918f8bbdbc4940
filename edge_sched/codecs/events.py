"""Kubernetes Events (core/v1) for decisions worth seeing in `kubectl describe` (spec S4).

Pure: builds the object the recorder posts. Names follow client-go's recorder,
`<object>.<unix nanoseconds in hex>`, so two events about one object never collide; the
Event lives in its object's namespace, as the API server requires.
"""

from __future__ import annotations

import datetime
from typing import Any, Literal

import attrs

COMPONENT = "edge-sched"
MAX_MESSAGE_CHARS = 1024  # the events.k8s.io note limit; core/v1 readers expect no more
_MAX_NAME = 253
_SUFFIX_CHARS = 17  # "." + up to 16 hex digits of nanoseconds

EventType = Literal["Normal", "Warning"]


@attrs.frozen
class ObjectRef:
    """The object an event is about."""

    api_version: str
    kind: str
    namespace: str
    name: str
    uid: str = ""


def pod_ref(namespace: str, name: str, uid: str) -> ObjectRef:
    return ObjectRef("v1", "Pod", namespace, name, uid)


def event_object(
    ref: ObjectRef, event_type: EventType, reason: str, message: str, *, at: float, instance: str
) -> dict[str, Any]:
    """The core/v1 Event posted to `/api/v1/namespaces/{ref.namespace}/events`.

    Args:
        ref: the object the event is about.
        event_type: Normal or Warning.
        reason: a short UpperCamelCase word, e.g. "FollowedPlan".
        message: one line for people; cut at MAX_MESSAGE_CHARS.
        at: unix seconds.
        instance: this process's host name, shown as the reporting instance.
    """
    stamp = datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    involved = {"apiVersion": ref.api_version, "kind": ref.kind, "namespace": ref.namespace, "name": ref.name}
    if ref.uid:
        involved["uid"] = ref.uid
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {
            "name": f"{ref.name[: _MAX_NAME - _SUFFIX_CHARS]}.{int(at * 1e9):x}",
            "namespace": ref.namespace,
        },
        "involvedObject": involved,
        "type": event_type,
        "reason": reason,
        "message": message,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }
