"""`make demo` (tests/cluster/demo.py), the README's main command, run as a user runs it.

It starts its own control plane, daemon, reporters and kube-scheduler, so it does not use the
session's control plane. The test reads the printed table, then stops the demo with SIGTERM
(how a service manager or `kill` stops it) and checks that everything it started is gone.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cluster import wait_for

REPO = Path(__file__).resolve().parents[2]
READY_LINE = "Ctrl-C tears everything down."


def processes_mentioning(text: str) -> dict[int, str]:
    """pid -> command line of the running processes whose command line contains `text`."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found[int(entry.name)] = cmdline[:200]
    return found


def test_demo_schedules_the_mix_and_sigterm_tears_everything_down(tmp_path: Path) -> None:
    out_path = tmp_path / "demo.out"
    with open(out_path, "wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "tests.cluster.demo"],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"}, start_new_session=True,
        )
    try:
        wait_for(lambda: READY_LINE in out_path.read_text() or demo.poll() is not None, 240, "the demo's results")
        text = out_path.read_text()
        assert demo.poll() is None, text
        rows = {m.group(1): (m.group(2), m.group(3)) for m in re.finditer(r"^(\S+)\s+(\w+)\s+(\S+)\s", text, re.M)}
        for i in range(4):  # GPU pods on GPU nodes, never on the saturated edge-gpu-00
            assert rows[f"train-{i}"][1].startswith("edge-gpu-") and rows[f"train-{i}"][1] != "edge-gpu-00", text
        for i in range(3):
            assert rows[f"infer-fpga-{i}"][1].startswith("edge-fpga-"), text
        assert rows["too-big"] == ("Pending", "-"), text
        assert "insufficient cpu" in text, text
        workdir = re.search(r"^logs\s+: (\S+)", text, re.M)
        assert workdir, text
        assert processes_mentioning(workdir.group(1)), "the demo's processes should be running now"

        started = time.monotonic()
        os.kill(demo.pid, signal.SIGTERM)
        assert demo.wait(30) == 0, out_path.read_text()
        assert time.monotonic() - started < 30
        assert out_path.read_text().rstrip().endswith("stopped.")
        assert processes_mentioning(workdir.group(1)) == {}
        assert not Path(workdir.group(1)).exists()
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
        # The demo's children run in sessions of their own: a failed teardown must not outlive the test.
        found = re.search(r"^logs\s+: (\S+)", out_path.read_text(), re.M)
        for pid in processes_mentioning(found.group(1)) if found else {}:
            os.kill(pid, signal.SIGKILL)
