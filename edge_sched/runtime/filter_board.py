"""Filter's verdict column kept per pod shape, re-judged only where candidates changed.

Each node's verdict is its own (rules 1-5 read one node), but the answer built from 1,000
verdicts (the names that passed, in order; the failures with their reasons; the nodes rule 5
could not judge) cost a few passes over all of them on every call. A `Column` keeps one
shape's verdicts with that answer; the next call re-judges the changed positions and keeps
the answer whenever no changed node's verdict moved, which is the common case: a pod placed
on a node rarely turns it from passing to failing. Like runtime/score_board.py, a column is
rebuilt when the call names other nodes or more than a quarter of them changed.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from itertools import filterfalse
from operator import attrgetter

import attrs

from edge_sched.core.model import Candidate
from edge_sched.runtime.candidates import Judged, changed_positions, remember

# Judges candidates: (candidates) -> their judgements, in order.
Judge = Callable[[list[Candidate]], Sequence[Judged]]

SHAPES = 16  # columns kept (least recently used dropped)

VERDICT, NODE, REASON, UNJUDGED = (attrgetter(a) for a in ("verdict", "node", "reason", "unjudged"))


@attrs.frozen
class FilterAnswer:
    """What a call's judgements amount to. Shared between calls: never modify."""

    passed: tuple[str, ...]  # the candidates that passed, in order (a name sent twice, twice)
    failed: dict[str, str]  # node -> reason
    unresolvable: dict[str, str]  # node -> reason (preemption cannot help)
    unjudged: dict[str, list[str]]  # "gpu/fpga" -> passed nodes rule 5 had no report of these for
    feasible: frozenset[str]


def answer_of(judgements: Sequence[Judged]) -> FilterAnswer:
    verdicts = list(map(VERDICT, judgements))
    passed = tuple(map(NODE, filterfalse(REASON, verdicts)))  # no reason: passed
    failed: dict[str, str] = {}
    unresolvable: dict[str, str] = {}
    for verdict in filter(REASON, verdicts):
        (unresolvable if verdict.unresolvable else failed)[verdict.node] = verdict.reason
    unjudged: dict[str, list[str]] = {}
    for judged in filter(UNJUDGED, judgements):  # only set on nodes that passed
        unjudged.setdefault(judged.unjudged, []).append(judged.verdict.node)
    return FilterAnswer(passed, failed, unresolvable, unjudged, frozenset(passed))


@attrs.define(eq=False)
class Column:
    candidates: list[Candidate]
    judgements: list[Judged]
    answer: FilterAnswer


def _build(candidates: list[Candidate], judge: Judge) -> Column:
    judgements = list(judge(candidates))
    return Column(list(candidates), judgements, answer_of(judgements))


def _update(column: Column, candidates: list[Candidate], judge: Judge) -> Column:
    changed = changed_positions(candidates, column.candidates)
    if changed is None:
        return _build(candidates, judge)
    if not changed:
        return column
    moved = False
    for i, judged in zip(changed, judge([candidates[i] for i in changed])):
        old = column.judgements[i]
        moved = moved or old.verdict != judged.verdict or old.unjudged != judged.unjudged
        column.candidates[i] = candidates[i]
        column.judgements[i] = judged
    if moved:
        column.answer = answer_of(column.judgements)
    return column


@attrs.define(eq=False)
class FilterBoards:
    shapes: int = SHAPES
    _by_shape: OrderedDict[Hashable, Column] = attrs.field(factory=OrderedDict)

    def answer(self, shape: Hashable, candidates: list[Candidate], judge: Judge) -> FilterAnswer:
        kept = self._by_shape.get(shape)
        column = _build(candidates, judge) if kept is None else _update(kept, candidates, judge)
        return remember(self._by_shape, shape, column, self.shapes).answer
