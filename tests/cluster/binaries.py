"""Where the control-plane programs are: runs build-binaries.sh (building on first use)."""

from __future__ import annotations

import collections
import functools
import subprocess
import sys
from pathlib import Path

BUILD_SCRIPT = Path(__file__).resolve().with_name("build-binaries.sh")
PROGRAMS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok")


class BinariesUnavailable(RuntimeError):
    """The control-plane programs could not be built or found."""


@functools.cache
def kube_bin_dir() -> Path:
    """The directory holding etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
    kubectl and kwok at the pinned versions.

    Runs `build-binaries.sh`, which answers at once from its cache
    (~/.cache/edge-sched/kube-<hash>/bin) and otherwise builds from the pinned Go modules
    (about 20 minutes on two cores). Build progress is echoed to stderr.
    Honours EDGE_SCHED_KUBE_BIN_DIR, KUBEBUILDER_ASSETS and EDGE_SCHED_CACHE (see the script).

    Raises:
        BinariesUnavailable: the script failed (its last output lines are in the message).
    """
    tail: collections.deque[str] = collections.deque(maxlen=60)
    with subprocess.Popen(
        ["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stderr is not None and proc.stdout is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            tail.append(line)
        out = proc.stdout.read()
    if proc.returncode != 0:
        raise BinariesUnavailable(
            f"{BUILD_SCRIPT} failed with exit code {proc.returncode}:\n{''.join(tail)}"
        )
    bin_dir = Path(out.strip().splitlines()[-1])
    missing = [p for p in PROGRAMS if not (bin_dir / p).exists()]
    if missing:
        raise BinariesUnavailable(f"{bin_dir} lacks {', '.join(missing)}")
    return bin_dir
