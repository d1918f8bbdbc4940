"""A stand-in for runtime.events.EventRecorder that keeps what was recorded, for unit tests."""

from __future__ import annotations

from edge_sched.codecs.events import ObjectRef


class RecordedEvents:
    def __init__(self) -> None:
        self.events: list[tuple[ObjectRef, str, str, str]] = []

    def record(self, ref: ObjectRef, event_type: str, reason: str, message: str) -> None:
        self.events.append((ref, event_type, reason, message))
