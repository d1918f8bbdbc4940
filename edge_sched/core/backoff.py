"""Bounded exponential backoff with full jitter, as pure state.

Jitter keeps many restarting watchers (or many edge-sched replicas after an
API-server restart) from retrying in lock-step.
"""

from __future__ import annotations

import random

import attrs


@attrs.define
class Backoff:
    initial_s: float = 0.5
    max_s: float = 30.0
    factor: float = 2.0
    rng: random.Random = attrs.field(factory=random.Random)
    _attempt: int = 0

    def next_delay(self) -> float:
        """The delay before the next try: uniform in [cap/2, cap]."""
        cap = min(self.max_s, self.initial_s * self.factor**self._attempt)
        self._attempt += 1
        return cap / 2 + self.rng.random() * cap / 2

    def reset(self) -> None:
        self._attempt = 0
