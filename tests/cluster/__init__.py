"""Test harness: a real local Kubernetes control plane (etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, kwok), a real Prometheus with an exporter the test
controls, and the edge-sched daemon as a subprocess.

    bin_dir = kube_bin_dir()
    with ControlPlane.start(workdir, bin_dir) as cp:
        cp.add_nodes([NodeSpec("n1", cpu="4", gpu=1)])
        cp.start_scheduler("default-scheduler", cp.scheduler_config("default-scheduler", cp.admin_kubeconfig, None))

By hand: `python -m tests.cluster up --nodes 5`.
"""

from tests.cluster.binaries import BinariesUnavailable, kube_bin_dir
from tests.cluster.controlplane import ControlPlane
from tests.cluster.daemon import EdgeSchedDaemon
from tests.cluster.kwok import (
    COMPLETE_AFTER_ANNOTATION,
    FAIL_AFTER_ANNOTATION,
    FAIL_ANNOTATION,
    FPGA_RESOURCE,
    GPU_RESOURCE,
    NodeSpec,
)
from tests.cluster.ports import free_port
from tests.cluster.processes import Proc, ProcessExited
from tests.cluster.prometheus import Exporter, Prometheus
from tests.cluster.resources import ApiError
from tests.cluster.scheduler import scheduler_config
from tests.cluster.waiting import WaitTimeout, wait_for

__all__ = [
    "COMPLETE_AFTER_ANNOTATION",
    "FAIL_AFTER_ANNOTATION",
    "FAIL_ANNOTATION",
    "FPGA_RESOURCE",
    "GPU_RESOURCE",
    "ApiError",
    "BinariesUnavailable",
    "ControlPlane",
    "EdgeSchedDaemon",
    "Exporter",
    "NodeSpec",
    "Proc",
    "ProcessExited",
    "Prometheus",
    "WaitTimeout",
    "free_port",
    "kube_bin_dir",
    "scheduler_config",
    "wait_for",
]
