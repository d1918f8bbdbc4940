"""The batch optimizer core (spec S10): mask, fitness, greedy, GA, feasibility, quality.

Quality is graded against the exact optimum of the same objective (tests/exact_optimum.py,
an outer-approximation MILP on scipy's HiGHS, itself checked here against brute force).
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_sched.core.filtering import FilterLimits, filter_node
from edge_sched.core.ga import Budget, GAParams, evolve, local_search, pack_largest_first
from edge_sched.core.load import LoadLimits
from edge_sched.core.model import (
    Candidate,
    NodeInfo,
    NodeLoad,
    NodeSelectorRequirement,
    NodeSelectorTerm,
    PodDemand,
)
from edge_sched.core.optimizer import solve
from edge_sched.core.placement import (
    UNPLACED,
    FitnessWeights,
    Problem,
    build_problem,
    evaluate,
    feasibility_mask,
    greedy,
    greedy_order,
    is_feasible,
)
from edge_sched.core.scoring import ScoreWeights, best_node, score_nodes
from tests.exact_optimum import penalised, solve_exact
from tests.optimizer_instances import random_instance

GI = 1024**3
MI = 1024**2
DEFAULT = FitnessWeights()  # 0.5 / 0.3 / 0.2
CPU_ONLY = FitnessWeights(1, 0, 0)
BALANCE_ONLY = FitnessWeights(0, 0, 1)


def node(name: str, cpu: int, mem_gi: int, *, used_cpu: int = 0, used_mem: int = 0, pods: int = 0, **labels: str) -> Candidate:
    info = NodeInfo(name, {"cpu": cpu, "memory": mem_gi * GI, "pods": 110}, labels)
    return Candidate(info, NodeLoad({"cpu": used_cpu, "memory": used_mem}, pods))


def pod(name: str, cpu: int, mem: int, **selector: str) -> PodDemand:
    return PodDemand("default", name, "", {"cpu": cpu, "memory": mem}, selector)


def run_ga(problem: Problem, weights: FitnessWeights, seed: int = 0, **params: float) -> np.ndarray:
    result = evolve(problem, weights, GAParams(**params), np.random.default_rng(seed), Budget.seconds(60))  # type: ignore[arg-type]
    return result.genes


# ------------------------------------------------------------------------- random instances
@st.composite
def instances(draw: st.DrawFn) -> tuple[list[PodDemand], list[Candidate]]:
    """Small random clusters: tight capacity, zones, a GPU resource, live usage, pod limits."""
    m = draw(st.integers(1, 5))
    cands = []
    for j in range(m):
        cpu = draw(st.sampled_from([500, 1000, 2000, 4000]))
        mem = draw(st.sampled_from([1, 2, 4])) * GI
        alloc = {"cpu": cpu, "memory": mem, "pods": draw(st.integers(1, 4))}
        if draw(st.booleans()):
            alloc["nvidia.com/gpu"] = draw(st.integers(0, 2))
        requested = {"cpu": draw(st.integers(0, cpu)), "memory": draw(st.integers(0, mem // MI)) * MI}
        usage = draw(st.none() | st.floats(0, 1))
        info = NodeInfo(f"n{j}", alloc, {"zone": draw(st.sampled_from(["a", "b"]))})
        cands.append(Candidate(info, NodeLoad(requested, draw(st.integers(0, 3))), cpu_usage=usage))
    n = draw(st.integers(1, 8))
    pods = []
    for i in range(n):
        requests = {"cpu": draw(st.integers(0, 2500)), "memory": draw(st.integers(0, 2048)) * MI}
        if draw(st.booleans()):
            requests["nvidia.com/gpu"] = draw(st.integers(0, 1))
        selector = {"zone": draw(st.sampled_from(["a", "b"]))} if draw(st.booleans()) else {}
        affinity: tuple[NodeSelectorTerm, ...] = ()
        if draw(st.booleans()):
            names = draw(st.lists(st.sampled_from([c.name for c in cands]), min_size=1, max_size=3))
            affinity = (NodeSelectorTerm(match_fields=(NodeSelectorRequirement("metadata.name", "In", tuple(names)),)),)
        pods.append(PodDemand("ns", f"p{i}", f"uid-{i}", requests, selector, affinity))
    return pods, cands


LIMITS = FilterLimits(max_pods_per_node=3, load=LoadLimits(cpu_threshold=0.9))


@given(instances())
@settings(max_examples=200, deadline=None)
def test_mask_is_filter_node_for_every_pair(inst: tuple[list[PodDemand], list[Candidate]]) -> None:
    pods, cands = inst
    mask = feasibility_mask(pods, cands, LIMITS)
    expected = [[filter_node(p, c, LIMITS).passed for c in cands] for p in pods]
    assert mask.tolist() == expected


def capacity_ok(
    pods: list[PodDemand], cands: list[Candidate], assignments: dict[str, str], limits: FilterLimits = LIMITS
) -> bool:
    """Independent check in Python ints: per node, requests fit and the pod limit holds."""
    by_name = {c.name: c for c in cands}
    placed: dict[str, list[PodDemand]] = {}
    for p in pods:
        if p.key in assignments:
            placed.setdefault(assignments[p.key], []).append(p)
    for name, group in placed.items():
        c = by_name[name]
        resources = {r for p in group for r in p.requests}
        for r in resources:
            if sum(p.requests.get(r, 0) for p in group) > c.node.allocatable.get(r, 0) - c.load.requested.get(r, 0):
                if any(p.requests.get(r, 0) > 0 for p in group):
                    return False
        if c.load.pod_count + len(group) > min(limits.max_pods_per_node, c.node.allocatable["pods"]):
            return False
    return True


@given(instances(), st.sampled_from(["default", "genetic"]), st.integers(0, 3))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_returned_plan_is_always_feasible(inst: tuple[list[PodDemand], list[Candidate]], algorithm: str, seed: int) -> None:
    pods, cands = inst
    out = solve(
        pods, cands, LIMITS,
        algorithm=algorithm,  # type: ignore[arg-type]
        score_weights=(0.6, 0.4), fitness_weights=DEFAULT,
        params=GAParams(population_size=8, generations=6, mutation_rate=0.3),
        rng=np.random.default_rng(seed), budget=Budget.seconds(30),
    )
    assert set(out.assignments) | set(out.unplaced) == {p.key for p in pods}
    assert not set(out.assignments) & set(out.unplaced)
    by_name = {c.name: c for c in cands}
    for p in pods:  # every placed pod passes filter on its node alone ...
        if p.key in out.assignments:
            assert filter_node(p, by_name[out.assignments[p.key]], LIMITS).passed
    assert capacity_ok(pods, cands, dict(out.assignments))  # ... and together they fit


@given(instances(), st.integers(0, 3))
@settings(max_examples=100, deadline=None)
def test_ga_population_stays_within_capacity_after_repair(inst: tuple[list[PodDemand], list[Candidate]], seed: int) -> None:
    pods, cands = inst
    problem = build_problem(pods, cands, LIMITS)
    genes = run_ga(problem, DEFAULT, seed, population_size=6, generations=4, mutation_rate=0.5)
    assert is_feasible(problem, genes)


# ------------------------------------------------------------------------- the fitness
def reference_fitness(problem: Problem, genes: list[int], weights: FitnessWeights) -> float:
    """docs/optimizer.md, written out in plain Python."""
    w_c, w_m, w_b = weights.normalised()
    m = problem.n_nodes
    added = [[0.0, 0.0] for _ in range(m)]
    used_by_plan = [False] * m
    for i, j in enumerate(genes):
        if j >= 0:
            used_by_plan[j] = True
            for r in (0, 1):
                added[j][r] += float(problem.request[i, r])
    s = []
    for r in (0, 1):
        free = [max(0.0, problem.allocatable[j, r] - problem.used[j, r]) for j in range(m)]
        stranded = sum(max(0.0, free[j] - added[j][r]) for j in range(m) if used_by_plan[j])
        s.append(1 - stranded / sum(free) if sum(free) > 0 else 1.0)
    sigmas = []
    for r in (0, 1):
        util = [
            (problem.used[j, r] + added[j][r]) / problem.allocatable[j, r] if problem.allocatable[j, r] > 0 else 1.0
            for j in range(m)
        ]
        mean = sum(util) / m
        sigmas.append(math.sqrt(sum((u - mean) ** 2 for u in util) / m))
    return w_c * s[0] + w_m * s[1] + w_b * (1 - sigmas[0] - sigmas[1])


@given(instances(), st.integers(0, 10**6), st.sampled_from([DEFAULT, CPU_ONLY, BALANCE_ONLY, FitnessWeights(0.2, 0.5, 0.3)]))
@settings(max_examples=150, deadline=None)
def test_vectorised_fitness_equals_the_documented_formula(
    inst: tuple[list[PodDemand], list[Candidate]], seed: int, weights: FitnessWeights
) -> None:
    pods, cands = inst
    problem = build_problem(pods, cands, LIMITS)
    if problem.n_nodes == 0:
        return
    rng = np.random.default_rng(seed)
    pop = rng.integers(-1, problem.n_nodes, size=(5, problem.n_pods))
    ev = evaluate(problem, pop, weights)
    for k in range(5):
        # σ comes from running sums (Σu, Σu²): near σ = 0 that is accurate to ~√ε ≈ 1e-8.
        assert ev.fitness[k] == pytest.approx(reference_fitness(problem, pop[k].tolist(), weights), abs=1e-7)


def worked_example() -> Problem:
    """The example of docs/optimizer.md."""
    cands = [
        node("a", 4000, 8, used_cpu=1000, used_mem=2 * GI, pods=1),
        node("b", 4000, 8),
    ]
    pods = [pod("p1", 1000, 2 * GI), pod("p2", 1000, 1 * GI), pod("p3", 500, 1 * GI)]
    return build_problem(pods, cands, FilterLimits())


def test_worked_example_of_the_docs() -> None:
    problem = worked_example()
    packed = np.array([0, 0, 0])  # all on a
    spread = np.array([1, 0, 0])  # p1 on b, p2 and p3 on a
    ev = evaluate(problem, np.stack([packed, spread]), DEFAULT)
    assert ev.cpu.tolist() == pytest.approx([1 - 0.5 / 7, 1 - 4.5 / 7])
    assert ev.memory.tolist() == pytest.approx([1 - 2 / 14, 1 - 10 / 14])
    assert ev.balance.tolist() == pytest.approx([1 - 0.4375 - 0.375, 1 - 0.1875 - 0.125])
    assert ev.fitness.tolist() == pytest.approx([0.758929, 0.401786], abs=1e-6)
    assert evaluate(problem, np.stack([packed, spread]), BALANCE_ONLY).fitness.tolist() == pytest.approx([0.1875, 0.6875])


# ------------------------------------------------------------------------- default (greedy)
def test_greedy_order_is_largest_cpu_then_memory_then_name() -> None:
    pods = [pod("c", 500, GI), pod("a", 500, 2 * GI), pod("b", 2000, GI), pod("d", 500, GI)]
    problem = build_problem(pods, [node("n", 8000, 16)], FilterLimits())
    assert [problem.pods[i].name for i in greedy_order(problem)] == ["b", "a", "c", "d"]


def test_greedy_places_each_pod_on_its_best_s5_node_given_the_pods_before_it() -> None:
    cands = [node("n1", 4000, 8, used_cpu=1000), node("n2", 4000, 8), node("n3", 2000, 4)]
    pods = [pod("big", 2000, GI), pod("small", 500, GI)]
    problem = build_problem(pods, cands, FilterLimits())
    genes = greedy(problem, ScoreWeights().normalised())
    # big first: n2 is the emptiest (S5); then small sees n2 with big on it.
    first = best_node({s.node: s.value for s in score_nodes(pods[0], cands, ScoreWeights())})
    assert problem.nodes[genes[0]] == first == "n2"
    after = [cands[0], Candidate(cands[1].node, NodeLoad({"cpu": 2000, "memory": GI}, 1)), cands[2]]
    second = best_node({s.node: s.value for s in score_nodes(pods[1], after, ScoreWeights())})
    assert problem.nodes[genes[1]] == second


def test_greedy_ties_go_to_the_first_node_name() -> None:
    problem = build_problem([pod("p", 100, MI)], [node("z", 4000, 8), node("m", 4000, 8)], FilterLimits())
    assert problem.nodes[greedy(problem, (0.6, 0.4))[0]] == "m"


# ------------------------------------------------------------------------- GA behaviour
def test_same_seed_same_plan_and_other_seeds_still_feasible() -> None:
    pods, cands = random_instance(40, 30, seed=5)
    problem = build_problem(pods, cands, FilterLimits())
    params = {"population_size": 20, "generations": 30, "mutation_rate": 0.1}
    first = run_ga(problem, DEFAULT, 7, **params)
    again = run_ga(problem, DEFAULT, 7, **params)
    assert first.tolist() == again.tolist()
    for seed in (1, 2):
        assert is_feasible(problem, run_ga(problem, DEFAULT, seed, **params))


def identical_nodes() -> tuple[list[PodDemand], list[Candidate]]:
    cands = [node(f"n{j}", 4000, 8) for j in range(6)]
    pods = [pod(f"p{i}", 1000, GI) for i in range(6)]
    return pods, cands


def test_balance_weight_one_spreads() -> None:
    pods, cands = identical_nodes()
    problem = build_problem(pods, cands, FilterLimits())
    genes = run_ga(problem, BALANCE_ONLY)
    assert sorted(np.bincount(genes, minlength=6).tolist()) == [1] * 6  # one pod per node


def test_cpu_weight_one_packs_by_cpu() -> None:
    pods, cands = identical_nodes()
    problem = build_problem(pods, cands, FilterLimits())
    genes = run_ga(problem, CPU_ONLY)
    per_node = np.bincount(genes, minlength=6)
    assert sorted(per_node.tolist(), reverse=True)[:2] == [4, 2]  # 6 cores of pods on 4-core nodes: 2 nodes
    assert (per_node > 0).sum() == 2


def test_cpu_weight_packs_by_cpu_not_memory() -> None:
    # Pods are CPU-light and memory-heavy: packing by CPU would put them together, but
    # memory only allows two per node; CPU-only weights pack as far as memory allows.
    cands = [node(f"n{j}", 8000, 8) for j in range(4)]
    pods = [pod(f"p{i}", 500, 3 * GI) for i in range(4)]
    problem = build_problem(pods, cands, FilterLimits())
    genes = run_ga(problem, CPU_ONLY)
    assert sorted(np.bincount(genes, minlength=4).tolist(), reverse=True) == [2, 2, 0, 0]


def test_weights_move_the_outcome_on_a_mixed_cluster() -> None:
    pods, cands = random_instance(20, 10, seed=3)
    problem = build_problem(pods, cands, FilterLimits())
    packed = run_ga(problem, CPU_ONLY)
    spread = run_ga(problem, BALANCE_ONLY)
    sigma = lambda g: 1 - evaluate(problem, g[None, :], BALANCE_ONLY).fitness[0]  # noqa: E731
    used_nodes = lambda g: len(set(g.tolist()))  # noqa: E731
    assert used_nodes(packed) < used_nodes(spread)
    assert sigma(spread) < sigma(packed)


def test_every_unplaced_pod_has_a_reason() -> None:
    cands = [node("n1", 2000, 4), node("n2", 2000, 4, zone="b")]
    pods = [
        pod("huge", 8000, GI),  # fits nowhere alone
        pod("zoned", 100, MI, zone="c"),  # no node in zone c
        pod("a", 1500, GI),
        pod("b", 1500, GI),
        pod("c", 1500, GI),  # fits alone, but only two 1.5-core pods fit in the cluster
    ]
    out = solve(
        pods, cands, FilterLimits(), algorithm="genetic", score_weights=(0.6, 0.4), fitness_weights=DEFAULT,
        params=GAParams(population_size=10, generations=10), rng=np.random.default_rng(0), budget=Budget.seconds(30),
    )
    assert "insufficient cpu (need 8, free 2)" in out.unplaced["default/huge"]
    assert "node selector mismatch: zone='c'" in out.unplaced["default/zoned"]
    squeezed = [k for k in ("default/a", "default/b", "default/c") if k in out.unplaced]
    assert len(squeezed) == 1
    assert "passes filter alone on 2 node(s), but no room is left" in out.unplaced[squeezed[0]]


# ------------------------------------------------------------------------- budget
def test_expired_budget_still_returns_a_feasible_best_so_far() -> None:
    pods, cands = random_instance(60, 40, seed=1)
    problem = build_problem(pods, cands, FilterLimits())
    result = evolve(problem, DEFAULT, GAParams(), np.random.default_rng(0), Budget(deadline=0.0))
    assert result.generations == 0 and result.stopped_by == "budget"
    assert is_feasible(problem, result.genes)
    assert (result.genes >= 0).all()  # the seeds place everything there is room for


def test_budget_is_checked_between_generations() -> None:
    pods, cands = random_instance(20, 10, seed=1)
    problem = build_problem(pods, cands, FilterLimits())
    started = time.perf_counter()
    result = evolve(problem, DEFAULT, GAParams(generations=10**7), np.random.default_rng(0), Budget.seconds(0.5))
    elapsed = time.perf_counter() - started
    assert result.stopped_by == "budget"
    assert 0 < result.generations < 10**7
    assert elapsed < 0.5 + 0.5  # past the deadline: at most one generation and a check per polish step
    assert is_feasible(problem, result.genes)


def test_tiny_real_budget_returns_quickly_with_a_valid_plan() -> None:
    pods, cands = random_instance(100, 300, seed=2)
    out = solve(
        pods, cands, FilterLimits(), algorithm="genetic", score_weights=(0.6, 0.4), fitness_weights=DEFAULT,
        params=GAParams(generations=100_000), rng=np.random.default_rng(0), budget=Budget.seconds(0.05),
    )
    assert out.stopped_by == "budget"
    assert out.elapsed_s < 2.0  # the seeds and one generation past the deadline at most
    assert len(out.assignments) == 100
    assert capacity_ok(pods, cands, dict(out.assignments), FilterLimits())


# ------------------------------------------------------------------------- quality
def brute_force(problem: Problem, weights: FitnessWeights) -> float:
    genes = np.array(list(itertools.product(range(-1, problem.n_nodes), repeat=problem.n_pods)))
    ev = evaluate(problem, genes, weights)
    placed = genes >= 0
    ok = np.array([problem.mask[placed[k].nonzero()[0], genes[k][placed[k]]].all() for k in range(len(genes))])
    return float(ev.penalised[ok & (ev.overload == 0)].max())


@pytest.mark.parametrize("seed", [10, 11, 12])
def test_exact_solver_agrees_with_brute_force(seed: int) -> None:
    pods, cands = random_instance(6, 4, seed)
    problem = build_problem(pods, cands, FilterLimits())
    for weights in (DEFAULT, BALANCE_ONLY):
        exact = solve_exact(problem, weights)
        assert exact.proven
        assert exact.fitness == pytest.approx(brute_force(problem, weights), abs=1e-6)


def quality_cases() -> Iterator[tuple[int, FitnessWeights]]:
    for seed in (1, 2, 3):
        for weights in (DEFAULT, CPU_ONLY, BALANCE_ONLY):
            yield seed, weights


@pytest.mark.parametrize(("seed", "weights"), list(quality_cases()))
def test_ga_is_within_one_percent_of_the_exact_optimum_on_12_pods_6_nodes(seed: int, weights: FitnessWeights) -> None:
    pods, cands = random_instance(12, 6, seed)
    problem = build_problem(pods, cands, FilterLimits())
    genes = run_ga(problem, weights)  # default population and generations
    ga = penalised(problem, genes, weights)
    exact = solve_exact(problem, weights, start=[genes], time_limit_s=120)
    assert exact.proven, exact
    assert exact.fitness >= ga - 1e-9  # the grader is never beaten: it is exact
    assert ga >= 0.99 * exact.upper_bound, (ga, exact)


def test_local_search_never_lowers_the_fitness() -> None:
    pods, cands = random_instance(30, 20, seed=4)
    problem = build_problem(pods, cands, FilterLimits())
    start = greedy(problem, (0.6, 0.4))
    better = local_search(problem, DEFAULT, start, Budget.seconds(30))
    assert penalised(problem, better, DEFAULT) >= penalised(problem, start, DEFAULT)
    assert is_feasible(problem, better)


def test_nothing_to_place_on() -> None:
    out = solve(
        [pod("p", 100, MI)], [], FilterLimits(), algorithm="genetic", score_weights=(0.6, 0.4),
        fitness_weights=DEFAULT, params=GAParams(), rng=np.random.default_rng(0), budget=Budget.seconds(1),
    )
    assert out.assignments == {} and out.unplaced == {"default/p": "no candidate nodes"}
    assert UNPLACED == -1


def test_unmeasured_nodes_count_the_measured_median_in_the_batch_too() -> None:
    """The GA's `used` follows the S5 score's NeutralUsage rule (field case C19)."""
    alloc = {"cpu": 4000, "memory": 8 * GI, "pods": 110}
    cands = [
        Candidate(NodeInfo("measured", alloc), NodeLoad({}), cpu_usage=0.5, memory_usage=0.25),
        Candidate(NodeInfo("unknown", alloc), NodeLoad({})),
    ]
    problem = build_problem([pod("p", 100, MI)], cands, FilterLimits())
    assert problem.nodes == ("measured", "unknown")
    assert problem.used.tolist() == [[2000.0, 2 * GI], [2000.0, 2 * GI]]


def test_pack_largest_first_fills_the_roomiest_nodes_within_capacity() -> None:
    def node(name: str, cpu: int) -> Candidate:
        return Candidate(NodeInfo(name, {"cpu": cpu, "memory": 64 * GI, "pods": 110}), NodeLoad({}))

    pods = [pod(f"p{i}", 1000, GI) for i in range(6)]
    problem = build_problem(pods, [node("small", 2000), node("large", 4000), node("medium", 3000)], FilterLimits())
    genes = pack_largest_first(problem)
    placed = [problem.nodes[j] for j in genes]
    assert placed.count("large") == 4 and placed.count("medium") == 2 and "small" not in placed
    assert is_feasible(problem, genes)
