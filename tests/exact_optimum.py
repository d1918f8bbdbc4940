"""Exact optimum of the batch fitness (core/placement.py) by outer approximation on a MILP.

Used by the optimizer tests and `bench/ga.py` to grade the GA; scipy is a test dependency
only (`scipy.optimize.milp`, HiGHS).

The fitness, maximised, is

    F = w_c·(1 − stranded_c/T_c) + w_m·(1 − stranded_m/T_m) + w_b·(1 − σ_c − σ_m) − #unplaced

with stranded_r = Σ_j y_j·free_jr − Σ_ij x_ij·q_ir (x: pod i on node j, y: node j used),
which is exact whenever no node's free capacity can go negative — true when measured usage
is unknown, so `used` = requests and every capacity-feasible assignment keeps free ≥ 0
(the instances here have no measured usage; `solve_exact` refuses others). σ_r is the
population std-dev of the utilisations u_jr = (used_jr + Σ_i x_ij·q_ir)/alloc_jr, a convex
function of x (a norm of the centred vector). It is represented by a variable t_r ≥ σ_r,
enforced lazily with tangent cuts: for the centred direction d = (u* − ū*)/(m·σ(u*)) at any
point u*, σ(u) ≥ d·u for every u, with equality at u*. Each round solves the MILP, which
gives an upper bound (cuts under-estimate σ); evaluating F exactly at its solution gives a
lower bound; a cut at that solution is added. The loop stops when the bounds meet within
`gap` — the solution is then optimal to that tolerance, not a heuristic.
"""

from __future__ import annotations

import time

import attrs
import numpy as np
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from edge_sched.core.placement import UNPLACED, FitnessWeights, IntArray, Problem, evaluate


@attrs.frozen
class Exact:
    genes: IntArray
    fitness: float  # penalised: F − unplaced
    upper_bound: float  # proven: no assignment scores more
    rounds: int
    proven: bool  # upper_bound − fitness ≤ gap: `fitness` is the optimum to that tolerance
    seconds: float


def penalised(problem: Problem, genes: IntArray, weights: FitnessWeights) -> float:
    return float(evaluate(problem, genes[None, :], weights).penalised[0])


def solve_exact(
    problem: Problem,
    weights: FitnessWeights,
    *,
    gap: float = 1e-6,
    max_rounds: int = 500,
    start: list[IntArray] | None = None,
    time_limit_s: float = 600.0,  # for the whole solve
    mip_gap: float = 1e-9,
) -> Exact:
    """The maximum of the penalised fitness over assignments within capacity and the mask.

    Returns the best assignment found and a proven upper bound on the maximum; they are
    within `gap` of each other (absolute), so `fitness` is the optimum to that tolerance.
    `mip_gap` is HiGHS's relative gap per MILP: the bound used is then HiGHS's dual bound,
    so the upper bound stays valid with a looser `mip_gap`, only more rounds or a wider
    final gap result.
    """
    assert problem.used.shape == problem.allocatable.shape
    free_from_requests = np.maximum(0.0, problem.cap_free[:, :2].astype(float))
    if not np.allclose(free_from_requests, problem.free):
        raise ValueError("exact solver: instances with measured usage above requests are not linear")
    n, m = problem.n_pods, problem.n_nodes
    w_c, w_m, w_b = weights.normalised()
    pairs = np.argwhere(problem.mask)  # (k, 2): pod, node
    k = len(pairs)
    # variable layout: x (k) | y (m) | z (n, unplaced) | t (2)
    ix, iy, iz, it = 0, k, k + m, k + m + n
    nvar = it + 2
    q = problem.score_request
    total = problem.free_total
    inv = problem.inv_allocatable
    # objective (minimise −F, constants dropped)
    c = np.zeros(nvar)
    for r, w in ((0, w_c), (1, w_m)):
        if total[r] > 0:
            c[iy : iy + m] += w * problem.free[:, r] / total[r]
            c[ix : ix + k] -= w * q[pairs[:, 0], r] / total[r]
    c[iz : iz + n] = 1.0
    c[it : it + 2] = w_b
    rows: list[sp.coo_matrix] = []
    lo: list[np.ndarray] = []
    hi: list[np.ndarray] = []

    def block(data: np.ndarray, r: np.ndarray, col: np.ndarray, nrows: int, lower: np.ndarray, upper: np.ndarray) -> None:
        rows.append(sp.coo_matrix((data, (r, col)), shape=(nrows, nvar)))
        lo.append(lower)
        hi.append(upper)

    # each pod placed once or unplaced
    block(
        np.r_[np.ones(k), np.ones(n)],
        np.r_[pairs[:, 0], np.arange(n)],
        np.r_[ix + np.arange(k), iz + np.arange(n)],
        n,
        np.ones(n),
        np.ones(n),
    )
    # capacity per resource and pod count, on used nodes only (Σ_i q_ir·x_ij ≤ cap_jr·y_j: the
    # same integer solutions as without y, but a much tighter LP relaxation for packing)
    for r in range(len(problem.resources)):
        block(np.r_[problem.request[pairs[:, 0], r].astype(float), -problem.cap_free[:, r].astype(float)],
              np.r_[pairs[:, 1], np.arange(m)], np.r_[ix + np.arange(k), iy + np.arange(m)], m,
              np.full(m, -np.inf), np.zeros(m))
    block(np.r_[np.ones(k), -problem.pods_free.astype(float)], np.r_[pairs[:, 1], np.arange(m)],
          np.r_[ix + np.arange(k), iy + np.arange(m)], m, np.full(m, -np.inf), np.zeros(m))
    # x_ij ≤ y_j
    block(np.r_[np.ones(k), -np.ones(k)], np.r_[np.arange(k), np.arange(k)],
          np.r_[ix + np.arange(k), iy + pairs[:, 1]], k, np.full(k, -np.inf), np.zeros(k))
    base = problem.used * inv + (problem.allocatable <= 0)  # utilisation before placement
    coef = q[pairs[:, 0]] * inv[pairs[:, 1]]  # (k, 2) utilisation a placement adds

    def cut(util: np.ndarray, r: int) -> None:
        centred = util[:, r] - util[:, r].mean()
        norm = np.sqrt((centred**2).sum())
        if norm <= 0:
            return
        d = centred / (norm * np.sqrt(m))  # σ(u) ≥ d·u, equality at util
        # t_r − Σ d_j·coef_ij·x_ij ≥ d·base
        block(np.r_[[1.0], -d[pairs[:, 1]] * coef[:, r]], np.zeros(k + 1, dtype=int),
              np.r_[[it + r], ix + np.arange(k)], 1, np.array([d @ base[:, r]]), np.array([np.inf]))

    def utilisation(genes: IntArray) -> np.ndarray:
        util = base.copy()
        for i, j in enumerate(genes):
            if j >= 0:
                util[j] += q[i] * inv[j]
        return util

    best_genes = np.full(n, UNPLACED, dtype=np.int64)
    best = penalised(problem, best_genes, weights)
    for genes in start or []:
        value = penalised(problem, genes, weights)
        if value > best:
            best, best_genes = value, genes.copy()
        for r in (0, 1):
            cut(utilisation(genes), r)
    integrality = np.r_[np.ones(k + m + n), np.zeros(2)]
    bounds = Bounds(np.zeros(nvar), np.r_[np.ones(k + m + n), np.full(2, np.inf)])
    constant = w_c + w_m + w_b  # the "1 −" of each score
    upper = np.inf
    started = time.perf_counter()
    for rounds in range(1, max_rounds + 1):
        remaining = time_limit_s - (time.perf_counter() - started)
        matrix = sp.vstack(rows).tocsr()
        res = milp(c, constraints=LinearConstraint(matrix, np.concatenate(lo), np.concatenate(hi)),
                   integrality=integrality, bounds=bounds,
                   options={"time_limit": max(1.0, remaining), "mip_rel_gap": mip_gap})
        if res.x is None:
            raise RuntimeError(f"MILP failed: {res.message}")
        # HiGHS's dual bound (≤ its primal objective) keeps `upper` a proof even when a MILP
        # stops at mip_gap rather than at its optimum.
        dual = getattr(res, "mip_dual_bound", None)
        upper = min(upper, constant - float(dual if dual is not None else res.fun))
        x = res.x[ix : ix + k] > 0.5
        genes = np.full(n, UNPLACED, dtype=np.int64)
        genes[pairs[x, 0]] = pairs[x, 1]
        value = penalised(problem, genes, weights)
        if value > best:
            best, best_genes = value, genes
        elapsed = time.perf_counter() - started
        if upper - best <= gap:
            return Exact(best_genes, best, upper, rounds, True, elapsed)
        if res.status == 1 or elapsed >= time_limit_s:  # time limit: the bound is all we have
            return Exact(best_genes, best, upper, rounds, False, elapsed)
        util = utilisation(genes)
        for r in (0, 1):
            cut(util, r)
    return Exact(best_genes, best, upper, max_rounds, False, time.perf_counter() - started)
