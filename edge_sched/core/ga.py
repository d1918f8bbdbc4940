"""The genetic algorithm of spec S10, vectorised over the population.

A chromosome is an int array with one gene per pod: the index of its node in
`Problem.nodes`, or UNPLACED. Genes are only ever drawn from the nodes the pod passes
filter on (rule 3 and the per-node rules hold by construction); capacity is kept by a
repair step after crossover and mutation, and `Evaluation.penalised` makes anything over
capacity lose regardless, so both "repair" and "penalty" guard feasibility.

One generation: keep the elite (the best `elite` chromosomes, unchanged), fill the rest
with children of binary-tournament parents by uniform crossover, mutate each gene with
probability GA_MUTATION_RATE (half the time to a random node the pod fits, half the time
to the node of another pod of the same chromosome, which lets packing emerge), repair,
evaluate. The initial population holds the `default` greedy, a greedy on the fitness
itself, that greedy improved by local search, a first-fit-decreasing packing onto the
largest nodes improved by local search, mutated copies of the better of the two and random
assignments. The best chromosome is improved by local search (single-pod moves, chosen
with exact incremental fitness deltas) at the end.

Time: sync and pure. `Budget` holds a deadline on an injected clock, checked between
generations and between local-search rounds; when it passes, the best chromosome so far
is returned (the caller runs this in a worker thread, which cannot be cancelled).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import attrs
import numpy as np

from edge_sched.core.placement import (
    UNPLACED,
    BoolArray,
    FitnessWeights,
    FloatArray,
    IntArray,
    Problem,
    evaluate,
    greedy_order,
    node_sums,
)

Clock = Callable[[], float]
# A move must gain more than this to count: below it, float noise could make local search
# cycle between equivalent assignments.
MIN_GAIN = 1e-12
# Pods considered for pair exchanges in one local-search step (pairs grow quadratically).
SWAP_PODS = 300
# Vectorised re-insertion rounds of `repair`.
REINSERT_ROUNDS = 4
# Exchange/relocation steps in one `improve` call.
IMPROVE_STEPS = 10
# Ruin-and-recreate rounds after the GA (`ils_rounds`): ILS_WORK / (pods × nodes), clipped.
ILS_WORK = 100_000
ILS_MIN_ROUNDS = 1
ILS_MAX_ROUNDS = 60


@attrs.frozen
class GAParams:
    """GA_POPULATION_SIZE, GA_GENERATIONS, GA_MUTATION_RATE; elite defaults to 10%."""

    population_size: int = 50
    generations: int = 100
    mutation_rate: float = 0.1
    elite: int | None = None

    @property
    def elite_count(self) -> int:
        if self.elite is not None:
            return max(1, min(self.elite, self.population_size - 1))
        return max(1, self.population_size // 10)


@attrs.frozen
class Budget:
    """A wall-clock deadline on `clock` (time.perf_counter unless a test injects one)."""

    deadline: float
    clock: Clock = time.perf_counter

    @classmethod
    def seconds(cls, budget_s: float, clock: Clock = time.perf_counter) -> Budget:
        return cls(clock() + budget_s, clock)

    def expired(self) -> bool:
        return self.clock() >= self.deadline


@attrs.frozen(eq=False)
class GAResult:
    genes: IntArray
    generations: int  # generations completed
    stopped_by: str  # "done" (all generations) or "budget"
    evaluations: int


# ----------------------------------------------------------------------------------------
# incremental state of one chromosome: exact fitness deltas for single-pod moves
# ----------------------------------------------------------------------------------------
@attrs.define(eq=False)
class Incremental:
    """One assignment with the node sums the fitness needs, updated move by move."""

    problem: Problem
    weights: tuple[float, float, float]
    genes: IntArray
    added: FloatArray = attrs.field(init=False)  # (m, 2)
    count: IntArray = attrs.field(init=False)  # (m,)
    rem: IntArray = attrs.field(init=False)  # (m, R) capacity left
    pods_rem: IntArray = attrs.field(init=False)  # (m,)

    def __attrs_post_init__(self) -> None:
        added_cap, count = node_sums(self.problem, self.genes[None, :])
        self.added = added_cap[0, :, :2].astype(np.float64)
        self.count = count[0]
        self.rem = self.problem.cap_free - added_cap[0]
        self.pods_rem = self.problem.pods_free - count[0]

    # fitness from node sums --------------------------------------------------------------
    def _f(self, stranded: FloatArray, s1: FloatArray, s2: FloatArray) -> FloatArray:
        """F from stranded (..., 2) and the sums of utilisation and its square (..., 2)."""
        p = self.problem
        m = p.n_nodes
        total = p.free_total
        packing = 1.0 - np.divide(stranded, total, out=np.zeros_like(stranded), where=total > 0)
        var = np.maximum(0.0, s2 / m - (s1 / m) ** 2)
        sigma = np.sqrt(var)
        w_cpu, w_mem, w_bal = self.weights
        return w_cpu * packing[..., 0] + w_mem * packing[..., 1] + w_bal * (1.0 - sigma[..., 0] - sigma[..., 1])

    def _node_terms(self) -> tuple[FloatArray, FloatArray]:
        p = self.problem
        strand = (self.count > 0)[:, None] * np.maximum(0.0, p.free - self.added)
        util = p.utilisation(p.used + self.added)
        return strand, util

    def fitness(self) -> float:
        strand, util = self._node_terms()
        return float(self._f(strand.sum(axis=0), util.sum(axis=0), (util**2).sum(axis=0)))

    # gains ------------------------------------------------------------------------------
    def gains(self, pods: IntArray | None = None) -> FloatArray:
        """(k, m): change of the penalised fitness if pod `pods[k]` moves to node j.

        An unplaced pod's "move" is its insertion (+1: one pod fewer unplaced). Moves to
        nodes the pod does not pass filter on, or has no room on, and "moves" to its own
        node are -inf.
        """
        p = self.problem
        idx = np.arange(p.n_pods) if pods is None else pods
        genes = self.genes[idx]
        q = p.score_request[idx]  # (k, 2)
        inv, free = p.inv_allocatable, p.free
        strand, util = self._node_terms()
        stranded, s1, s2 = strand.sum(axis=0), util.sum(axis=0), (util**2).sum(axis=0)
        placed = genes >= 0
        a = np.where(placed, genes, 0)
        # leaving node a (zero for unplaced pods)
        still_used = (self.count[a] - 1) > 0
        strand_a = still_used[:, None] * np.maximum(0.0, free[a] - (self.added[a] - q))
        d_strand_a = np.where(placed[:, None], strand_a - strand[a], 0.0)
        u_a = util[a]
        u_a_new = u_a - q * inv[a]
        d_s1_a = np.where(placed[:, None], u_a_new - u_a, 0.0)
        d_s2_a = np.where(placed[:, None], u_a_new**2 - u_a**2, 0.0)
        # joining node j
        strand_j = np.maximum(0.0, free[None] - self.added[None] - q[:, None, :])  # (k, m, 2)
        u_j_new = util[None] + q[:, None, :] * inv[None]
        new_stranded = stranded + d_strand_a[:, None, :] + (strand_j - strand[None])
        new_s1 = s1 + d_s1_a[:, None, :] + (u_j_new - util[None])
        new_s2 = s2 + d_s2_a[:, None, :] + (u_j_new**2 - util[None] ** 2)
        gain = self._f(new_stranded, new_s1, new_s2) - self._f(stranded, s1, s2)
        gain += (~placed)[:, None] * 1.0
        fits = (
            p.mask[idx]
            & (p.request[idx][:, None, :] <= self.rem[None]).all(axis=2)
            & (self.pods_rem >= 1)[None, :]
        )
        fits[placed, genes[placed]] = False
        return np.where(fits, gain, -np.inf)

    def swap_gains(self, pods: IntArray) -> FloatArray:
        """(k, k): change of the fitness if pods `pods[x]` and `pods[y]` exchange nodes.

        Both must be placed, on different nodes, each passing filter on the other's node
        with room for the exchange; other pairs are -inf. Pod counts do not change.
        """
        p = self.problem
        genes = self.genes[pods]
        placed = genes >= 0
        a = np.where(placed, genes, 0)
        q = p.score_request[pods]  # (k, 2)
        inv, free = p.inv_allocatable, p.free
        strand, util = self._node_terms()
        stranded, s1, s2 = strand.sum(axis=0), util.sum(axis=0), (util**2).sum(axis=0)
        # x leaves a_x, y arrives: delta on a_x is q_y − q_x (k, k, 2), on a_y its negative
        delta = q[None, :, :] - q[:, None, :]
        added_x = self.added[a][:, None, :] + delta
        added_y = self.added[a][None, :, :] - delta
        strand_x = np.maximum(0.0, free[a][:, None, :] - added_x) - strand[a][:, None, :]
        strand_y = np.maximum(0.0, free[a][None, :, :] - added_y) - strand[a][None, :, :]
        u_x = util[a][:, None, :]
        u_y = util[a][None, :, :]
        u_x_new = u_x + delta * inv[a][:, None, :]
        u_y_new = u_y - delta * inv[a][None, :, :]
        new_stranded = stranded + strand_x + strand_y
        new_s1 = s1 + (u_x_new - u_x) + (u_y_new - u_y)
        new_s2 = s2 + (u_x_new**2 - u_x**2) + (u_y_new**2 - u_y**2)
        gain = self._f(new_stranded, new_s1, new_s2) - self._f(stranded, s1, s2)
        req = p.request[pods]  # (k, R)
        rem = self.rem[a]  # (k, R)
        room_x = (rem[:, None, :] + req[:, None, :] - req[None, :, :] >= 0).all(axis=2)
        room_y = (rem[None, :, :] + req[None, :, :] - req[:, None, :] >= 0).all(axis=2)
        fits = (
            placed[:, None]
            & placed[None, :]
            & (a[:, None] != a[None, :])
            & p.mask[pods][:, a]  # x may go on a_y
            & p.mask[pods][:, a].T  # y may go on a_x
            & room_x
            & room_y
        )
        return np.where(fits, gain, -np.inf)

    def relocate_gains(self) -> tuple[IntArray, FloatArray]:
        """The nodes that hold pods (k,), and (k, m): change of the fitness if every pod on
        node `used[x]` moves to node j together.

        Single moves cannot empty a node whose pods only pay off elsewhere as a group
        (packing: the stranded capacity of a node drops only when its last pod leaves),
        so this neighbourhood closes or exchanges a whole node in one step. Targets that
        some pod of the group does not pass filter on, or without room for the whole
        group, and the node itself, are -inf.
        """
        p = self.problem
        used = np.flatnonzero(self.count > 0)
        if used.size == 0:
            return used, np.zeros((0, p.n_nodes))
        inv, free = p.inv_allocatable, p.free
        strand, util = self._node_terms()
        stranded, s1, s2 = strand.sum(axis=0), util.sum(axis=0), (util**2).sum(axis=0)
        group = self.added[used]  # (k, 2)
        # leaving: the node is empty afterwards, back to its utilisation before the plan
        d_strand_a = -strand[used]
        u_a, u_a_new = util[used], p.base_utilisation[used]
        # joining j with the whole group
        strand_j = np.maximum(0.0, free[None] - self.added[None] - group[:, None, :]) - strand[None]
        u_j_new = util[None] + group[:, None, :] * inv[None]
        new_stranded = stranded + d_strand_a[:, None, :] + strand_j
        new_s1 = s1 + (u_a_new - u_a)[:, None, :] + (u_j_new - util[None])
        new_s2 = s2 + (u_a_new**2 - u_a**2)[:, None, :] + (u_j_new**2 - util[None] ** 2)
        gain = self._f(new_stranded, new_s1, new_s2) - self._f(stranded, s1, s2)
        group_cap = p.cap_free[used] - self.rem[used]  # (k, R)
        fits = (group_cap[:, None, :] <= self.rem[None]).all(axis=2) & (self.count[used][:, None] <= self.pods_rem[None])
        for x, a in enumerate(used):
            fits[x] &= p.mask[self.genes == a].all(axis=0)
        fits[np.arange(used.size), used] = False
        return used, np.where(fits, gain, -np.inf)

    def unplace(self, i: int) -> None:
        p = self.problem
        a = int(self.genes[i])
        if a >= 0:
            self.added[a] -= p.score_request[i]
            self.count[a] -= 1
            self.rem[a] += p.request[i]
            self.pods_rem[a] += 1
        self.genes[i] = UNPLACED

    def move(self, i: int, j: int) -> None:
        p = self.problem
        self.unplace(i)
        self.genes[i] = j
        self.added[j] += p.score_request[i]
        self.count[j] += 1
        self.rem[j] -= p.request[i]
        self.pods_rem[j] -= 1


def fitness_greedy(problem: Problem, weights: FitnessWeights) -> IntArray:
    """Each pod, in `greedy_order`, to the node that raises the fitness most (ties: first node)."""
    state = Incremental(problem, weights.normalised(), np.full(problem.n_pods, UNPLACED, dtype=np.int64))
    for i in greedy_order(problem):
        gain = state.gains(np.array([i]))[0]
        j = int(np.argmax(gain))
        if np.isfinite(gain[j]):
            state.move(i, j)
    return state.genes


def local_search(problem: Problem, weights: FitnessWeights, genes: IntArray, budget: Budget) -> IntArray:
    """Improve `genes` by single-pod moves until none gains or the budget runs out.

    Each round computes every pod's best move, then applies, best first, the moves whose
    nodes no earlier move of the round touched (packing terms are per node, so such moves
    add up; balance couples them weakly). If the round as a whole did not gain, only its
    single best move is kept, which always gains: the fitness rises every round.
    """
    if problem.n_nodes == 0 or problem.n_pods == 0:
        return genes.copy()
    w = weights.normalised()
    state = Incremental(problem, w, genes.copy())
    current = state.fitness() - float((state.genes < 0).sum())
    while not budget.expired():
        gain = state.gains()
        best_j = np.argmax(gain, axis=1)
        best = gain[np.arange(problem.n_pods), best_j]
        order = [int(i) for i in np.argsort(-best, kind="stable") if best[i] > MIN_GAIN]
        if not order:
            break
        snapshot = state.genes.copy()
        touched: set[int] = set()
        moves = 0
        for i in order:
            a, j = int(state.genes[i]), int(best_j[i])
            if a in touched or j in touched:
                continue
            if not (problem.request[i] <= state.rem[j]).all() or state.pods_rem[j] < 1:
                continue
            state.move(i, j)
            touched.update((a, j) if a >= 0 else (j,))
            moves += 1
        after = state.fitness() - float((state.genes < 0).sum())
        if after <= current + MIN_GAIN and moves > 1:
            state = Incremental(problem, w, snapshot)
            first = order[0]
            state.move(first, int(best_j[first]))
            after = state.fitness() - float((state.genes < 0).sum())
        if after <= current + MIN_GAIN:
            break
        current = after
    return state.genes


def improve(
    problem: Problem, weights: FitnessWeights, genes: IntArray, budget: Budget, rng: np.random.Generator
) -> IntArray:
    """`local_search` with two larger neighbourhoods: when no single move gains, pairs of
    pods exchange nodes and whole nodes' pods relocate (`_apply_best_swap`,
    `_apply_best_relocation`) as long as that gains, then single moves resume.

    At most IMPROVE_STEPS exchange/relocation steps per call: on large instances each
    step gains little, and the GA_TIME_BUDGET default must hold for 100 pods × 1,000 nodes.
    """
    if problem.n_nodes == 0 or problem.n_pods < 2:
        return local_search(problem, weights, genes, budget)
    current = local_search(problem, weights, genes, budget)
    steps = 0
    while steps < IMPROVE_STEPS and not budget.expired():
        state = Incremental(problem, weights.normalised(), current.copy())
        taken = 0
        while steps < IMPROVE_STEPS and not budget.expired():
            before = state.fitness()
            if not (_apply_best_swap(state, rng, before) or _apply_best_relocation(state, before)):
                break
            steps += 1
            taken += 1
        if taken == 0:
            break
        current = local_search(problem, weights, state.genes, budget)
    return current


def _apply_best_swap(state: Incremental, rng: np.random.Generator, before: float) -> bool:
    """Exchange the nodes of pairs of placed pods: the best pairs that touch no node twice,
    best first, if together they gain; else the single best pair, if it gains. True if
    anything was applied.

    Pairs are quadratic in the pods, so beyond SWAP_PODS pods a random SWAP_PODS of them
    are considered each time.
    """
    placed = np.flatnonzero(state.genes >= 0)
    if placed.size < 2:
        return False
    if placed.size > SWAP_PODS:
        placed = np.sort(rng.choice(placed, SWAP_PODS, replace=False))
    gain = np.triu(state.swap_gains(placed), 1)
    gain[np.tril_indices(placed.size)] = -np.inf
    flat = np.flatnonzero(gain > MIN_GAIN)
    if flat.size == 0:
        return False
    flat = flat[np.argsort(-gain.ravel()[flat], kind="stable")]
    pairs: list[tuple[int, int]] = []
    touched: set[int] = set()
    for f in flat:
        x, y = (int(placed[k]) for k in divmod(int(f), placed.size))
        a, b = int(state.genes[x]), int(state.genes[y])
        if a in touched or b in touched:
            continue
        touched.update((a, b))
        pairs.append((x, y))
    for attempt in (pairs, pairs[:1]) if len(pairs) > 1 else (pairs,):
        undo = _swap(state, attempt)
        if state.fitness() > before + MIN_GAIN:
            return True
        _swap(state, undo)
    return False


def _swap(state: Incremental, pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Exchange the nodes of each pair; returns the pairs that undo it."""
    for x, y in pairs:
        a, b = int(state.genes[x]), int(state.genes[y])
        state.move(x, b)
        state.move(y, a)
    return pairs[::-1]


def _apply_best_relocation(state: Incremental, before: float) -> bool:
    """Move every pod of one node to another node, the best such move, if it gains."""
    used, gain = state.relocate_gains()
    if gain.size == 0:
        return False
    x, j = divmod(int(np.argmax(gain)), gain.shape[1])
    if gain[x, j] <= MIN_GAIN:
        return False
    a = int(used[x])
    pods = [int(i) for i in np.flatnonzero(state.genes == a)]
    for i in pods:
        state.move(i, j)
    return _kept_if_gained(state, before, [(i, a) for i in pods])


def _kept_if_gained(state: Incremental, before: float, undo: list[tuple[int, int]]) -> bool:
    """Keep the change just made if the fitness rose (it does, up to float noise), else
    undo it with `undo` (pod, node) moves."""
    if state.fitness() > before + MIN_GAIN:
        return True
    for i, j in undo:
        state.move(i, j)
    return False


# ----------------------------------------------------------------------------------------
# population operators
# ----------------------------------------------------------------------------------------
def _feasible_table(problem: Problem) -> tuple[IntArray, IntArray]:
    """(n, k_max) node indices each pod passes filter on (padded with UNPLACED), and counts."""
    counts = problem.mask.sum(axis=1).astype(np.int64)
    width = max(1, int(counts.max(initial=0)))
    table = np.full((problem.n_pods, width), UNPLACED, dtype=np.int64)
    for i in range(problem.n_pods):
        nodes = np.flatnonzero(problem.mask[i])
        table[i, : len(nodes)] = nodes
    return table, counts


def random_genes(table: IntArray, counts: IntArray, rng: np.random.Generator, size: int) -> IntArray:
    """`size` chromosomes with each gene a uniformly random node its pod passes filter on."""
    n = counts.shape[0]
    pick = np.floor(rng.random((size, n)) * np.maximum(counts, 1)[None, :]).astype(np.int64)
    return table[np.arange(n)[None, :], pick]


def mutate(
    pop: IntArray, problem: Problem, table: IntArray, counts: IntArray, rate: float, rng: np.random.Generator
) -> IntArray:
    size, n = pop.shape
    hit = (rng.random((size, n)) < rate) & (counts > 0)[None, :]
    random_node = random_genes(table, counts, rng, size)
    donor = rng.integers(0, max(n, 1), size=(size, n))
    donor_node = pop[np.arange(size)[:, None], donor]
    donor_ok = (donor_node >= 0) & problem.mask[np.arange(n)[None, :], np.maximum(donor_node, 0)]
    use_donor = donor_ok & (rng.random((size, n)) < 0.5)
    new = np.where(use_donor, donor_node, random_node)
    return np.where(hit, new, pop)


def _drop_over_capacity(pop: IntArray, problem: Problem, priority: IntArray, fresh: BoolArray | None) -> None:
    """Unplace, in place, the genes that overfill their node.

    Per (chromosome, node), genes are taken in order (fresh genes last, then `priority`)
    and the first to exceed cpu, memory, any other resource or the pod limit, and every
    gene after it, is dropped: segmented cumulative sums in exact integers. With `fresh`
    given, only the (chromosome, node) pairs that received a fresh gene are looked at
    (the others were within capacity already).
    """
    size, n = pop.shape
    m = problem.n_nodes
    rows, cols = np.nonzero(pop >= 0)
    if rows.size == 0:
        return
    group = rows * m + pop[rows, cols]
    late = np.zeros(rows.size, dtype=np.int64)
    if fresh is not None:
        late = fresh[rows, cols].astype(np.int64)
        hit = np.zeros(size * m, dtype=bool)
        hit[group[late == 1]] = True
        keep = hit[group]
        group, rows, cols, late = group[keep], rows[keep], cols[keep], late[keep]
    order = np.argsort((group * 2 + late) * n + priority[cols])
    group, rows, cols = group[order], rows[order], cols[order]
    req = problem.request[cols]
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    seg = np.repeat(np.arange(starts.size), np.diff(np.r_[starts, group.size]))
    csum = np.cumsum(req, axis=0)
    within = csum - (csum[starts] - req[starts])[seg]
    count = np.arange(group.size) - starts[seg] + 1
    node = group % m
    over = (within > problem.cap_free[node]).any(axis=1) | (count > problem.pods_free[node])
    pop[rows[over], cols[over]] = UNPLACED


def repair(pop: IntArray, problem: Problem, rng: np.random.Generator, table: IntArray, counts: IntArray) -> IntArray:
    """Bring every chromosome within capacity: drop what overfills, then re-insert.

    Dropping keeps, per node, a random-priority prefix that fits (`_drop_over_capacity`).
    Re-insertion runs a few vectorised rounds: each unplaced gene (of a pod that passes
    filter somewhere) gets a candidate node, the node of another pod of the same
    chromosome when the pod passes filter there, else a random node it passes filter
    on; candidates that overfill are dropped again, the genes already placed keeping
    priority. A gene still unplaced after the rounds stays UNPLACED (and costs 1).
    """
    pop = pop.copy()
    size, n = pop.shape
    if n == 0 or problem.n_nodes == 0:
        return pop
    priority = rng.permutation(n)
    _drop_over_capacity(pop, problem, priority, None)
    movable = (counts > 0)[None, :]
    for _ in range(REINSERT_ROUNDS):
        missing = (pop < 0) & movable
        if not missing.any():
            break
        rows, cols = np.nonzero(missing)
        random_node = table[cols, np.floor(rng.random(rows.size) * counts[cols]).astype(np.int64)]
        donor = pop[rows, rng.integers(0, n, size=rows.size)]
        use_donor = (donor >= 0) & problem.mask[cols, np.maximum(donor, 0)]
        pop[rows, cols] = np.where(use_donor, donor, random_node)
        fresh = np.zeros_like(pop, dtype=bool)
        fresh[rows, cols] = True
        _drop_over_capacity(pop, problem, priority, fresh)
    return pop


# ----------------------------------------------------------------------------------------
# the run
# ----------------------------------------------------------------------------------------
def evolve(
    problem: Problem,
    weights: FitnessWeights,
    params: GAParams,
    rng: np.random.Generator,
    budget: Budget,
    seeds: Sequence[IntArray] = (),
) -> GAResult:
    """Run the GA; returns the best chromosome found (within capacity) when the
    generations are done or the budget has run out, whichever comes first.

    Args:
        seeds: chromosomes to start from (e.g. the `default` greedy); each is repaired.
    """
    n, size = problem.n_pods, params.population_size
    if n == 0 or problem.n_nodes == 0:
        return GAResult(np.full(n, UNPLACED, dtype=np.int64), 0, "done", 0)
    table, counts = _feasible_table(problem)
    start = fitness_greedy(problem, weights)
    polished = improve(problem, weights, start, budget, rng)
    packed = improve(problem, weights, pack_largest_first(problem), budget, rng)
    initial = [np.asarray(s, dtype=np.int64) for s in seeds] + [start, polished, packed]
    initial = initial[:size]
    n_mutants = (size - len(initial)) // 2
    parent = max((polished, packed), key=lambda genes: _penalised(problem, genes, weights))
    mutants = mutate(np.repeat(parent[None, :], n_mutants, axis=0), problem, table, counts, params.mutation_rate, rng)
    randoms = random_genes(table, counts, rng, size - len(initial) - n_mutants)
    pop = repair(np.concatenate([np.stack(initial), mutants, randoms]), problem, rng, table, counts)
    fit = evaluate(problem, pop, weights).penalised
    evaluations = size
    elite = params.elite_count
    generations, stopped_by = 0, "done"
    for _ in range(params.generations):
        if budget.expired():
            stopped_by = "budget"
            break
        keep = np.argsort(-fit, kind="stable")[:elite]
        n_children = size - elite
        a = rng.integers(0, size, size=(2, n_children))
        b = rng.integers(0, size, size=(2, n_children))
        parent_a = np.where(fit[a[0]] >= fit[a[1]], a[0], a[1])
        parent_b = np.where(fit[b[0]] >= fit[b[1]], b[0], b[1])
        cross = rng.random((n_children, n)) < 0.5
        children = np.where(cross, pop[parent_a], pop[parent_b])
        children = mutate(children, problem, table, counts, params.mutation_rate, rng)
        children = repair(children, problem, rng, table, counts)
        child_fit = evaluate(problem, children, weights).penalised
        evaluations += n_children
        pop = np.concatenate([pop[keep], children])
        fit = np.concatenate([fit[keep], child_fit])
        generations += 1
    best = improve(problem, weights, pop[int(np.argmax(fit))].copy(), budget, rng)
    best = ruin_and_recreate_search(problem, weights, best, budget, rng)
    return GAResult(best, generations, stopped_by, evaluations)


def pack_largest_first(problem: Problem) -> IntArray:
    """First-fit decreasing onto the nodes with the most free capacity (as a share of the
    batch's free total): few nodes, filled up.

    The packing terms count a node's stranded capacity until its last pod leaves, so the
    fitness greedy, which places one pod at a time on the tightest fit, spreads a batch over
    many small nodes, and no single-pod move can empty one of them. This seed starts the
    search at the other end (at 30 pods x 50 nodes: 4 nodes where the greedy used 8, and
    99 % of the MILP's best assignment where the search without it stopped at 97.4 %).
    """
    genes = np.full(problem.n_pods, UNPLACED, dtype=np.int64)
    rem, pods_rem = problem.cap_free.copy(), problem.pods_free.copy()
    total = np.where(problem.free_total > 0, problem.free_total, 1.0)
    nodes = np.argsort(-(problem.free / total).sum(axis=1), kind="stable")
    for i in greedy_order(problem):
        for j in nodes:
            if problem.mask[i, j] and pods_rem[j] >= 1 and (problem.request[i] <= rem[j]).all():
                genes[i] = j
                rem[j] -= problem.request[i]
                pods_rem[j] -= 1
                break
    return genes


def _penalised(problem: Problem, genes: IntArray, weights: FitnessWeights) -> float:
    return float(evaluate(problem, genes[None, :], weights).penalised[0])


def ils_rounds(problem: Problem) -> int:
    """Ruin-and-recreate rounds after the GA: each costs a few full-neighbourhood scans of
    n·m pairs, so the count shrinks with the instance (60 for 12 pods × 6 nodes, 4 for
    100 × 1,000), keeping the whole run well inside GA_TIME_BUDGET's default."""
    return int(np.clip(ILS_WORK // max(1, problem.n_pods * problem.n_nodes), ILS_MIN_ROUNDS, ILS_MAX_ROUNDS))


def ruin_and_recreate_search(
    problem: Problem, weights: FitnessWeights, genes: IntArray, budget: Budget, rng: np.random.Generator
) -> IntArray:
    """Iterated local search from `genes`: ruin part of the best assignment, rebuild it,
    polish it with `improve`, keep it if it scores higher. Returns the best found."""
    best, best_fit = genes, _penalised(problem, genes, weights)
    if problem.n_pods == 0 or problem.n_nodes < 2:
        return best
    for _ in range(ils_rounds(problem)):
        if budget.expired():
            break
        trial = improve(problem, weights, ruin_and_recreate(problem, weights, best, rng), budget, rng)
        fit = _penalised(problem, trial, weights)
        if fit > best_fit + MIN_GAIN:
            best, best_fit = trial, fit
    return best


def ruin_and_recreate(problem: Problem, weights: FitnessWeights, genes: IntArray, rng: np.random.Generator) -> IntArray:
    """Unplace every pod of one to three random nodes that hold pods (and each other pod
    with probability 0.1), then re-insert them one by one, each on the node that raises
    the fitness most; half the time the emptied nodes are closed to them, half the time
    pods go in a random order instead of largest first. This reaches assignments that
    differ from `genes` in whole nodes, which moves, swaps and relocations cannot."""
    state = Incremental(problem, weights.normalised(), genes.copy())
    used = np.flatnonzero(state.count > 0)
    if used.size == 0:
        return state.genes
    ruined = rng.choice(used, size=int(rng.integers(1, min(3, used.size) + 1)), replace=False)
    hit = np.isin(state.genes, ruined) | ((state.genes >= 0) & (rng.random(problem.n_pods) < 0.1))
    pods = [int(i) for i in np.flatnonzero(hit)]
    for i in pods:
        state.unplace(i)
    closed = rng.random() < 0.5
    if rng.random() < 0.5:
        pods = [pods[k] for k in rng.permutation(len(pods))]
    else:
        rank = {i: r for r, i in enumerate(greedy_order(problem))}
        pods.sort(key=rank.__getitem__)
    for i in pods:
        gain = state.gains(np.array([i]))[0]
        if closed:
            shut = gain.copy()
            shut[ruined] = -np.inf
            if np.isfinite(shut).any():
                gain = shut
        j = int(np.argmax(gain))
        if np.isfinite(gain[j]):
            state.move(i, j)
    return state.genes
