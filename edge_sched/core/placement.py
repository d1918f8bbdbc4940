"""A batch of pods and its candidate nodes as arrays, and the batch fitness (spec S10).

A batch (a task plan, or the pods of `POST /scheduler/plans`) is turned once into numpy
arrays by `build_problem`: what each pod requests, what each node has free, and which pod
may go on which node by the extender's filter rules (`feasibility_mask`). Everything
after that is array arithmetic, vectorised over a whole GA population (`evaluate`).

The fitness, with a worked example, is in docs/optimizer.md. For an assignment of pods to
nodes (R = cpu, memory; "eligible" nodes are those at least one pod of the batch passes
filter on):

    F     = (w_cpu·S_cpu + w_mem·S_mem + w_bal·S_bal) / (w_cpu + w_mem + w_bal)
    S_R   = 1 − stranded_R / free_R
            stranded_R: free R left, after placement, on the nodes the plan puts pods on
            free_R:     free R of all eligible nodes before placement
            (packing: few, already busy nodes, and the tightest fit)
    S_bal = 1 − (σ_cpu + σ_mem)
            σ_R: population std-dev over eligible nodes of utilisation after placement;
            values in [0, 1] have std-dev at most 0.5, so σ_R/0.5 is the normalised
            std-dev and S_bal is one minus the mean of the two normalised values
            (balance: even utilisation)

"free" and "utilisation" use the S5 notion of used (the larger of requests and measured
usage); a planned pod adds its request on top, since it is not running yet. Capacity
(rule 1, rule 2) uses requests only, as kube-scheduler does.

S_R is linear in the assignment and σ is a norm, so −F is convex in the relaxed
assignment: the exact optimum of small instances is computable by an outer-approximation
MILP, which the tests and `bench/ga.py` use to grade the GA.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs
import numpy as np
import numpy.typing as npt

from edge_sched.core.filtering import (
    FilterLimits,
    check_load,
    check_placement_rules,
    check_pod_count,
    check_power,
    filter_node,
)
from edge_sched.core.model import CPU, MEMORY, PODS, Candidate, PodDemand
from edge_sched.core.scoring import NeutralUsage, used_amount

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

UNPLACED = -1
SCORE_RESOURCES = (CPU, MEMORY)
# Quantities are exact Python ints, the arrays int64: values beyond ±2**62 are clipped.
# No real node is affected (that is 4.6 EB of memory); it only keeps absurd input total.
INT_CLIP = 2**62
# float64 sums of integers are exact below 2**53; above, node sums fall back to np.add.at.
_EXACT_FLOAT = 2**53
_NODE_REASONS_SHOWN = 3


@attrs.frozen
class FitnessWeights:
    """GA_WEIGHT_CPU, GA_WEIGHT_MEMORY, GA_WEIGHT_BALANCE (normalised to sum 1 when used)."""

    cpu: float = 0.5
    memory: float = 0.3
    balance: float = 0.2

    def normalised(self) -> tuple[float, float, float]:
        total = self.cpu + self.memory + self.balance
        if total <= 0:  # settings reject this; keep the function total anyway
            return 1 / 3, 1 / 3, 1 / 3
        return self.cpu / total, self.memory / total, self.balance / total


def _free(problem: Problem) -> FloatArray:
    return np.maximum(0.0, problem.allocatable - problem.used)


def _inv(problem: Problem) -> FloatArray:
    alloc = problem.allocatable
    return np.divide(1.0, alloc, out=np.zeros_like(alloc), where=alloc > 0)


@attrs.frozen(eq=False)
class Problem:
    """One batch as arrays. Node axis: eligible nodes only, sorted by name.

    Nodes no pod of the batch can use take no part in any score: with 5,000 cached nodes
    and a plan pinned by nodeSelector to ten of them, the balance is about those ten.
    """

    pods: tuple[PodDemand, ...]
    nodes: tuple[str, ...]
    resources: tuple[str, ...]  # capacity axis: cpu, memory, then every other requested resource
    request: IntArray  # (n, R) what each pod requests
    cap_free: IntArray  # (m, R) allocatable − requested by the pods already on the node
    pods_free: IntArray  # (m,) min(pods allocatable, MAX_PODS_PER_NODE) − pods on the node
    mask: BoolArray  # (n, m) the pod passes filter on the node alone
    allocatable: FloatArray  # (m, 2) cpu, memory
    used: FloatArray  # (m, 2) max(requested, measured), as in the S5 score
    why_unplaceable: Mapping[int, str]  # pod index -> reason, for pods no node accepts
    # derived, computed once
    score_request: FloatArray = attrs.field(init=False)  # (n, 2) cpu, memory requests
    free: FloatArray = attrs.field(init=False)  # (m, 2) max(0, allocatable − used)
    free_total: FloatArray = attrs.field(init=False)  # (2,)
    inv_allocatable: FloatArray = attrs.field(init=False)  # (m, 2) 1/allocatable, 0 where none
    exact_float_sums: bool = attrs.field(init=False)
    base_utilisation: FloatArray = attrs.field(init=False)  # (m, 2) before placement
    base_sums: FloatArray = attrs.field(init=False)  # (2, 2): [Σu, Σu²] per resource before placement

    @score_request.default
    def _score_request(self) -> FloatArray:
        return self.request[:, :2].astype(np.float64)

    @free.default
    def _free_default(self) -> FloatArray:
        return _free(self)

    @free_total.default
    def _free_total(self) -> FloatArray:
        return np.asarray(self.free.sum(axis=0), dtype=np.float64)

    @inv_allocatable.default
    def _inv_default(self) -> FloatArray:
        return _inv(self)

    @exact_float_sums.default
    def _exact(self) -> bool:
        return bool(self.request.size == 0 or int(np.abs(self.request).max()) * max(1, len(self.pods)) < _EXACT_FLOAT)

    @base_utilisation.default
    def _base_utilisation(self) -> FloatArray:
        return self.utilisation(self.used)

    @base_sums.default
    def _base_sums(self) -> FloatArray:
        u = self.base_utilisation
        return np.stack([u.sum(axis=0), (u**2).sum(axis=0)])

    @property
    def n_pods(self) -> int:
        return len(self.pods)

    @property
    def n_nodes(self) -> int:
        return len(self.nodes)

    def utilisation(self, load: FloatArray) -> FloatArray:
        """Utilisation of `load` (..., m, 2); a resource a node does not have counts as full."""
        return np.where(self.allocatable > 0, load * self.inv_allocatable, 1.0)

    def utilisation_of(self, nodes: IntArray, load: FloatArray) -> FloatArray:
        """Utilisation of `load` (k, 2) on `nodes` (k,)."""
        return np.where(self.allocatable[nodes] > 0, load * self.inv_allocatable[nodes], 1.0)


# ----------------------------------------------------------------------------------------
# building the problem
# ----------------------------------------------------------------------------------------
def _clip(value: int) -> int:
    return max(-INT_CLIP, min(INT_CLIP, value))


def feasibility_mask(
    pods: Sequence[PodDemand], candidates: Sequence[Candidate], limits: FilterLimits
) -> BoolArray:
    """(n, m): `filter_node(pod, cand, limits).passed` for every pair, computed in bulk.

    Rules 2 and 4 depend on the node only, rule 1 is array arithmetic, rule 3 runs once
    per distinct (nodeSelector, affinity) among the pods and rule 5 only for pods with a
    power demand, so 100 pods on 1,000 nodes cost far fewer than 100,000 `filter_node`
    calls. The tests check the equivalence with `filter_node` on random instances.
    """
    n, m = len(pods), len(candidates)
    mask = np.ones((n, m), dtype=bool)
    if n == 0 or m == 0:
        return mask
    node_ok = np.array(
        [check_pod_count(c, limits) is None and check_load(c, limits) is None for c in candidates]
    )
    mask &= node_ok[None, :]
    for resource in sorted({r for p in pods for r, v in p.requests.items() if v > 0}):
        need = np.array([_clip(p.requests.get(resource, 0)) for p in pods], dtype=np.int64)
        free = np.array(
            [_clip(c.node.allocatable.get(resource, 0) - c.load.requested.get(resource, 0)) for c in candidates],
            dtype=np.int64,
        )
        mask &= (need[:, None] <= 0) | (need[:, None] <= free[None, :])
    by_rules: dict[tuple[object, ...], BoolArray] = {}
    for i, pod in enumerate(pods):
        if pod.node_selector or pod.affinity_terms:
            key = (tuple(sorted(pod.node_selector.items())), pod.affinity_terms)
            row = by_rules.get(key)
            if row is None:
                row = np.array([check_placement_rules(pod, c.node) is None for c in candidates])
                by_rules[key] = row
            mask[i] &= row
        if pod.power_demand is not None:
            mask[i] &= np.array([check_power(pod, c) is None for c in candidates])
    return mask


def _why_unplaceable(pod: PodDemand, candidates: Sequence[Candidate], limits: FilterLimits) -> str:
    if not candidates:
        return "no candidate nodes"
    verdicts = [filter_node(pod, c, limits) for c in candidates]
    shown = "; ".join(f"{v.node}: {v.reason}" for v in verdicts[:_NODE_REASONS_SHOWN])
    more = len(verdicts) - _NODE_REASONS_SHOWN
    suffix = f"; and {more} more node{'s' if more != 1 else ''}" if more > 0 else ""
    return f"no node passes filter for this pod ({len(verdicts)} tried): {shown}{suffix}"


def build_problem(pods: Sequence[PodDemand], candidates: Sequence[Candidate], limits: FilterLimits) -> Problem:
    """The batch as arrays: eligible nodes (sorted by name), requests, free capacity, mask."""
    cands = sorted(candidates, key=lambda c: c.name)
    full_mask = feasibility_mask(pods, cands, limits)
    eligible = [j for j in range(len(cands)) if full_mask[:, j].any()]
    kept = [cands[j] for j in eligible]
    neutral = NeutralUsage.of(cands)  # unmeasured nodes count the others' median usage, as in S5
    why = {i: _why_unplaceable(pod, cands, limits) for i, pod in enumerate(pods) if not full_mask[i].any()}
    extra = sorted({r for p in pods for r, v in p.requests.items() if v > 0} - {CPU, MEMORY})
    resources = (CPU, MEMORY, *extra)
    n, m, n_res = len(pods), len(kept), len(resources)
    return Problem(
        pods=tuple(pods),
        nodes=tuple(c.name for c in kept),
        resources=resources,
        request=np.array(
            [[_clip(p.requests.get(r, 0)) for r in resources] for p in pods], dtype=np.int64
        ).reshape(n, n_res),
        cap_free=np.array(
            [[_clip(c.node.allocatable.get(r, 0) - c.load.requested.get(r, 0)) for r in resources] for c in kept],
            dtype=np.int64,
        ).reshape(m, n_res),
        pods_free=np.array(
            [
                min(limits.max_pods_per_node, c.node.allocatable.get(PODS, limits.max_pods_per_node))
                - c.load.pod_count
                for c in kept
            ],
            dtype=np.int64,
        ).reshape(m),
        mask=full_mask[:, eligible].reshape(n, m),
        allocatable=np.array(
            [[float(c.node.allocatable.get(r, 0)) for r in SCORE_RESOURCES] for c in kept], dtype=np.float64
        ).reshape(m, 2),
        used=np.array([[used_amount(r, c, neutral) for r in SCORE_RESOURCES] for c in kept], dtype=np.float64).reshape(m, 2),
        why_unplaceable=why,
    )


# ----------------------------------------------------------------------------------------
# fitness, vectorised over a population
# ----------------------------------------------------------------------------------------
@attrs.frozen(eq=False)
class Evaluation:
    """Fitness of each chromosome of a population (arrays of shape (P,))."""

    fitness: FloatArray  # F: 0..1 (balance dips below 0 only on nodes already over-committed)
    cpu: FloatArray
    memory: FloatArray
    balance: FloatArray
    unplaced: IntArray  # pods without a node
    overload: FloatArray  # capacity broken: summed relative excess (0 when within capacity)

    @property
    def penalised(self) -> FloatArray:
        """What selection maximises.

        Every unplaced pod costs 1, more than any difference in F; an assignment over
        capacity loses to every assignment within capacity, however many pods the
        latter leaves unplaced.
        """
        worst = float(self.unplaced.max()) if self.unplaced.size else 0.0
        broken = self.overload > 0
        return self.fitness - self.unplaced - broken * (worst + 2.0 + self.overload)


def node_sums(problem: Problem, pop: IntArray) -> tuple[IntArray, IntArray]:
    """Per chromosome and node: the capacity the placed pods add (P, m, R) and their number (P, m)."""
    n_pop = pop.shape[0]
    m, n_res = problem.n_nodes, len(problem.resources)
    rows, cols = np.nonzero(pop >= 0)
    nodes = pop[rows, cols]
    count = np.bincount(rows * m + nodes, minlength=n_pop * m).reshape(n_pop, m).astype(np.int64)
    added = np.zeros((n_pop, m, n_res), dtype=np.int64)
    if problem.exact_float_sums:
        flat = rows * m + nodes
        for r in range(n_res):
            sums = np.bincount(flat, weights=problem.request[cols, r].astype(np.float64), minlength=n_pop * m)
            added[:, :, r] = sums.reshape(n_pop, m).astype(np.int64)
    else:
        np.add.at(added, (rows, nodes), problem.request[cols])
    return added, count


def evaluate(problem: Problem, pop: IntArray, weights: FitnessWeights) -> Evaluation:
    """Fitness of every chromosome of `pop` (P, n); genes are node indices or UNPLACED.

    Sparse in the nodes: only (chromosome, node) pairs that receive pods are computed;
    the untouched nodes enter the balance through precomputed sums, so the cost grows
    with P·n, not P·m (100 pods on 1,000 nodes is 5,000 pairs, not 50,000).
    """
    n_pop = pop.shape[0]
    unplaced = (pop < 0).sum(axis=1).astype(np.int64)
    m = problem.n_nodes
    if m == 0:
        ones = np.ones(n_pop)
        return Evaluation(ones, ones.copy(), ones.copy(), ones.copy(), unplaced, np.zeros(n_pop))
    rows, cols = np.nonzero(pop >= 0)
    groups, inverse = np.unique(rows * m + pop[rows, cols], return_inverse=True)
    g_pop, g_node = groups // m, groups % m
    n_groups = groups.size
    count = np.bincount(inverse, minlength=n_groups)
    added_cap = _group_sums(problem, inverse, cols, n_groups)
    added = added_cap[:, :2].astype(np.float64)

    def per_chromosome(values: FloatArray) -> FloatArray:
        return np.bincount(g_pop, weights=values, minlength=n_pop)

    stranded = np.maximum(0.0, problem.free[g_node] - added)  # (G, 2)
    util = problem.utilisation_of(g_node, problem.used[g_node] + added)
    base = problem.base_utilisation[g_node]
    out: list[FloatArray] = []
    for r in (0, 1):
        total = problem.free_total[r]
        share = per_chromosome(stranded[:, r]) / total if total > 0 else np.zeros(n_pop)
        out.append(1.0 - share)
    sigma_sum = np.zeros(n_pop)
    # σ from running sums: exact up to rounding, which near σ = 0 is amplified by the
    # square root to ~1e-8 — far below any difference selection acts on.
    for r in (0, 1):
        s1 = problem.base_sums[0, r] + per_chromosome(util[:, r] - base[:, r])
        s2 = problem.base_sums[1, r] + per_chromosome(util[:, r] ** 2 - base[:, r] ** 2)
        sigma_sum += np.sqrt(np.maximum(0.0, s2 / m - (s1 / m) ** 2))
    balance = 1.0 - sigma_sum
    excess = np.maximum(0, added_cap - problem.cap_free[g_node]).astype(np.float64)
    scale = np.maximum(1.0, np.abs(problem.cap_free[g_node]).astype(np.float64))
    group_over = (excess / scale).sum(axis=1) + np.maximum(0, count - problem.pods_free[g_node])
    overload = per_chromosome(group_over.astype(np.float64))
    w_cpu, w_mem, w_bal = weights.normalised()
    fitness = w_cpu * out[0] + w_mem * out[1] + w_bal * balance
    return Evaluation(fitness, out[0], out[1], balance, unplaced, overload)


def _group_sums(problem: Problem, inverse: IntArray, cols: IntArray, n_groups: int) -> IntArray:
    """Exact per-group sums of the requests of pods `cols` grouped by `inverse` (G, R)."""
    n_res = len(problem.resources)
    sums = np.zeros((n_groups, n_res), dtype=np.int64)
    if problem.exact_float_sums:
        for r in range(n_res):
            total = np.bincount(inverse, weights=problem.request[cols, r].astype(np.float64), minlength=n_groups)
            sums[:, r] = total.astype(np.int64)
    else:
        np.add.at(sums, inverse, problem.request[cols])
    return sums


# ----------------------------------------------------------------------------------------
# the default algorithm: greedy with the S5 score
# ----------------------------------------------------------------------------------------
def greedy_order(problem: Problem) -> list[int]:
    """Pods in the order greedy placements take them: largest CPU request first, then
    largest memory request, then namespace/name (first-fit-decreasing: big pods while
    room is plentiful, small ones fill the gaps)."""
    req = problem.score_request
    return sorted(range(problem.n_pods), key=lambda i: (-req[i, 0], -req[i, 1], problem.pods[i].key))


def greedy(problem: Problem, score_weights: tuple[float, float]) -> IntArray:
    """`default`: each pod, in `greedy_order`, goes to the node with the best S5 score
    among the nodes where it still fits next to the pods placed before it; ties go to the
    alphabetically first node. `score_weights`: WEIGHT_CPU, WEIGHT_MEMORY, normalised."""
    w_cpu, w_mem = score_weights
    genes = np.full(problem.n_pods, UNPLACED, dtype=np.int64)
    if problem.n_nodes == 0:
        return genes
    rem = problem.cap_free.copy()
    pods_rem = problem.pods_free.copy()
    load = problem.used.copy()
    alloc = problem.allocatable
    safe_alloc = np.where(alloc > 0, alloc, 1.0)
    for i in greedy_order(problem):
        fits = problem.mask[i] & (problem.request[i][None, :] <= rem).all(axis=1) & (pods_rem >= 1)
        if not fits.any():
            continue
        free = np.where(alloc > 0, np.clip(1.0 - (load + problem.score_request[i]) / safe_alloc, 0.0, 1.0), 0.0)
        score = w_cpu * free[:, 0] + w_mem * free[:, 1]
        j = int(np.argmax(np.where(fits, score, -np.inf)))  # first maximum; nodes are sorted by name
        genes[i] = j
        rem[j] -= problem.request[i]
        pods_rem[j] -= 1
        load[j] += problem.score_request[i]
    return genes


# ----------------------------------------------------------------------------------------
# feasibility of a final assignment
# ----------------------------------------------------------------------------------------
def make_feasible(problem: Problem, genes: IntArray) -> tuple[IntArray, list[int]]:
    """The assignment with every pod that breaks the mask or capacity unplaced.

    Checked pod by pod in `greedy_order` with exact integer arithmetic, so whatever an
    optimizer returns, a plan never over-commits a node. Returns the assignment and the
    pods this step had to unplace (none, unless an optimizer has a bug).
    """
    out = genes.copy()
    dropped: list[int] = []
    rem = problem.cap_free.copy()
    pods_rem = problem.pods_free.copy()
    for i in greedy_order(problem):
        j = int(out[i])
        if j < 0:
            continue
        if problem.mask[i, j] and bool((problem.request[i] <= rem[j]).all()) and pods_rem[j] >= 1:
            rem[j] -= problem.request[i]
            pods_rem[j] -= 1
        else:
            out[i] = UNPLACED
            dropped.append(i)
    return out, dropped


def is_feasible(problem: Problem, genes: IntArray) -> bool:
    """Every placed pod passes filter on its node and no node is over capacity."""
    placed = np.flatnonzero(genes >= 0)
    if not problem.mask[placed, genes[placed]].all():
        return False
    added, count = node_sums(problem, genes[None, :])
    return bool((added[0] <= problem.cap_free).all() and (count[0] <= problem.pods_free).all())
