"""Which nodes' data changed since a point: what lets the verbs skip unchanged nodes.

kube-scheduler names the same nodes for pod after pod and only a few of them change in
between. Each store that holds per-node data a verb's answer depends on (the cluster cache,
the usage store, the power store, the status book) writes every change to its `ChangeLog`;
`runtime/rows.py` asks the logs which nodes changed since its last call and rebuilds only
those, as kube-scheduler's own snapshot does with node generations. What changes by time
alone (readings ageing, reports and reservations expiring) is not written here: rows carry
the time until which they hold.
"""

from __future__ import annotations

from collections import deque

import attrs

# Changes kept; a reader further behind than this rebuilds everything.
KEPT = 4096


@attrs.define(eq=False)
class ChangeLog:
    limit: int = KEPT
    seq: int = 0  # the number of the last change
    _everything_at: int = 0  # the last change to every node at once
    _dropped_at: int = 0  # the last change no longer kept
    _log: deque[tuple[int, str]] = attrs.field(factory=deque)

    def node(self, name: str) -> None:
        """`name`'s data changed."""
        self.seq += 1
        self._log.append((self.seq, name))
        if len(self._log) > self.limit:
            self._dropped_at = self._log.popleft()[0]

    def everything(self) -> None:
        """Any node's data may have changed (a relist, a poll that replaced every reading)."""
        self.seq += 1
        self._everything_at = self.seq
        self._log.clear()

    def since(self, seq: int) -> set[str] | None:
        """Names changed after change `seq`; None when that is every node, or no longer known."""
        if seq < self._everything_at or seq < self._dropped_at:
            return None
        names: set[str] = set()
        for at, name in reversed(self._log):
            if at <= seq:
                break
            names.add(name)
        return names
