"""`python -m tests.cluster up [--nodes N]`: a local control plane to poke at by hand.

Starts etcd, kube-apiserver, kube-controller-manager, kwok with N fake nodes (mixed CPU,
GPU and FPGA) and a plain kube-scheduler (`default-scheduler`), prints the admin
kubeconfig, and waits for Ctrl-C (or SIGTERM, SIGHUP), then tears everything down.
`python -m tests.cluster bin-dir` prints (building if needed) the binary directory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from tests.cluster.binaries import kube_bin_dir
from tests.cluster.controlplane import ControlPlane
from tests.cluster.kwok import NodeSpec
from tests.cluster.processes import interrupt_on_signals

_CPUS = ("4", "8", "16", "32")
_MEMORY = ("8Gi", "16Gi", "32Gi", "64Gi")


def demo_nodes(count: int) -> list[NodeSpec]:
    """`count` nodes edge-0…: CPU sizes cycle, every third has 1-2 GPUs, every fifth an FPGA."""
    nodes = []
    for i in range(count):
        gpu = (1 + i % 2) if i % 3 == 2 else 0
        fpga = 1 if i % 5 == 4 else 0
        labels = {"edge-sched.io/zone": f"zone-{i % 2}"}
        if gpu:
            labels["edge-sched.io/accelerator"] = "gpu"
        nodes.append(
            NodeSpec(f"edge-{i}", cpu=_CPUS[i % 4], memory=_MEMORY[i % 4], gpu=gpu, fpga=fpga, labels=labels)
        )
    return nodes


def up(nodes: int, workdir: Path | None, scheduler: bool) -> int:
    bin_dir = kube_bin_dir()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="edge-sched-cluster-"))
    interrupt_on_signals()
    start = time.monotonic()
    cp = ControlPlane.start(workdir, bin_dir)
    try:
        print(f"control plane up in {time.monotonic() - start:.1f}s: {cp.api_url}", flush=True)
        if nodes:
            names = cp.add_nodes(demo_nodes(nodes))
            print(f"{len(names)} kwok nodes Ready: {', '.join(names)}")
        if scheduler:
            config = cp.scheduler_config("default-scheduler", cp.admin_kubeconfig, None)
            cp.start_scheduler("default-scheduler", config)
            print("kube-scheduler (default-scheduler) running")
        print(f"admin kubeconfig: {cp.admin_kubeconfig}")
        print(f"  export KUBECONFIG={cp.admin_kubeconfig}; alias kubectl={bin_dir / 'kubectl'}")
        print(f"logs: {workdir}/*.log")
        print("Ctrl-C to stop.", flush=True)
        while True:
            for name, proc in cp.procs.items():
                if not proc.alive:
                    print(f"{name} exited ({proc.returncode}):\n{proc.log_tail()}", file=sys.stderr)
                    return 1
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nstopping…", flush=True)
        return 0
    finally:
        cp.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.cluster", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up_cmd = sub.add_parser("up", help="start a control plane with kwok nodes until Ctrl-C")
    up_cmd.add_argument("--nodes", type=int, default=3, help="number of kwok nodes (default 3)")
    up_cmd.add_argument("--workdir", type=Path, help="state and logs (default: a new temp dir)")
    up_cmd.add_argument("--no-scheduler", action="store_true", help="do not start a default kube-scheduler")
    sub.add_parser("bin-dir", help="print the directory of the control-plane binaries (builds if needed)")
    args = parser.parse_args(argv)
    if args.command == "bin-dir":
        print(kube_bin_dir())
        return 0
    return up(args.nodes, args.workdir, not args.no_scheduler)


if __name__ == "__main__":
    raise SystemExit(main())
