"""Random batch-optimizer instances, shared by tests/unit/test_optimizer.py and bench/ga.py."""

from __future__ import annotations

import numpy as np

from edge_sched.core.model import Candidate, NodeInfo, NodeLoad, PodDemand

GI = 1024**3
MI = 1024**2


def random_instance(n: int, m: int, seed: int) -> tuple[list[PodDemand], list[Candidate]]:
    """`n` pods on `m` nodes: mixed node sizes, partly loaded, pods from 100m to 2 cores."""
    r = np.random.default_rng(seed)
    cands = []
    for j in range(m):
        cpu = int(r.choice([2000, 4000, 8000, 16000]))
        mem = int(r.choice([4, 8, 16, 32])) * GI
        load = NodeLoad({"cpu": int(cpu * r.uniform(0, 0.6)), "memory": int(mem * r.uniform(0, 0.6))}, 3)
        cands.append(Candidate(NodeInfo(f"n{j:04d}", {"cpu": cpu, "memory": mem, "pods": 110}), load))
    pods = [
        PodDemand("default", f"p{i:03d}", "", {"cpu": int(r.choice([100, 250, 500, 1000, 2000])),
                                                 "memory": int(r.choice([128, 256, 512, 1024, 2048])) * MI})
        for i in range(n)
    ]
    return pods, cands
