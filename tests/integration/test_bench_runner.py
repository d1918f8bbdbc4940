"""`python -m bench --quick` (docs/benchmarks.md) runs and writes a well-formed results.json.

Only the cheap benchmarks (the optimizer and the UDP codec with one short listener rate); the
figures themselves are not checked against targets: benchmarks measure, they are not timed tests.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KEYS = {"name", "value", "unit", "baseline", "ratio", "target", "met"}


def test_quick_run_writes_one_entry_per_figure_with_the_results_keys(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "ga", "udp", "--output", str(output)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    results = json.loads(output.read_text())
    names = [r["name"] for r in results]
    assert any(n.startswith("GA time") for n in names) and any(n.startswith("UDP codec") for n in names), names
    for r in results:
        assert set(r) == KEYS, r
        assert math.isfinite(r["value"]), r
        assert r["baseline"] is None or (math.isfinite(r["baseline"]) and r["ratio"] is not None), r
        assert r["met"] is None or isinstance(r["met"], bool), r
    assert "name" in done.stdout and "ratio" in done.stdout  # the summary table's header
