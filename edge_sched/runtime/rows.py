"""Candidates kept between calls, rebuilt only for the nodes that changed (docs/watch-cache.md).

A verb names the same nodes call after call. Building a node's candidate asks four stores
(cluster, load, usage, power) and checks that each answer is the one the candidate was built
from: about a microsecond and a half per node, most of a call at 1,000 nodes. `NodeRows`
keeps each node's candidate with the time until which it holds, and before each call drops
the rows of nodes the stores' `ChangeLog`s name since the last one and of rows whose time is
up; an unchanged node then costs one look-up. The candidates themselves still come from
`runtime/candidates.py`, so a rebuilt row whose inputs did not really change is the same
object, and the verdicts and scores kept for it stay good.
"""

from __future__ import annotations

import math

import attrs

from edge_sched.core.model import Candidate
from edge_sched.runtime.changes import ChangeLog


@attrs.define(eq=False)
class NodeRows:
    candidates: dict[str, Candidate] = attrs.field(factory=dict)  # node -> its kept candidate
    _until: dict[str, float] = attrs.field(factory=dict)  # node -> until when its row holds
    _seen: dict[ChangeLog, int] = attrs.field(factory=dict)  # each log's last change already applied
    _next_expiry: float = math.inf  # the earliest `until` among the rows

    def refresh(self, logs: list[ChangeLog], now: float) -> None:
        """Drop what changed since the last call: the rows of nodes the logs name (every row
        when a log says everything changed, or is new) and the rows whose time is up."""
        stale: set[str] | None = set()
        for log in logs:
            seen = self._seen.get(log)
            names = log.since(seen) if seen is not None else None
            if names is None or stale is None:
                stale = None
            else:
                stale |= names
        self._seen = {log: log.seq for log in logs}
        if stale is None:
            self.candidates.clear()
            self._until.clear()
            self._next_expiry = math.inf
        else:
            for name in stale:
                self.candidates.pop(name, None)
                self._until.pop(name, None)
        if now >= self._next_expiry:
            for name in [n for n, until in self._until.items() if now >= until]:
                del self.candidates[name], self._until[name]
            self._next_expiry = min(self._until.values(), default=math.inf)

    def put(self, name: str, candidate: Candidate, until: float, now: float) -> None:
        """Keep `candidate` while `now` < `until` and nothing the logs name changes."""
        if now < until:
            self.candidates[name] = candidate
            self._until[name] = until
            self._next_expiry = min(self._next_expiry, until)
