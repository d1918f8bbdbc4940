"""The single-file executable from `make dist` (docs/deployment.md, "Single-file executable").

`make dist DIST_OUT=<tmp>` builds the shiv zipapp once per module (about 30 s: pip installs the
daemon and its dependencies into it). It is installed the way the docs say, as an executable
named `edge-sched`, and run by its shebang with a PATH whose python3.X has no numpy (Debian's
/usr/bin/python3.X has none of the daemon's dependencies), so what the daemon imports comes from
inside the file. It unpacks into a SHIV_ROOT under the test's tmp dir, never into HOME or the
repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import httpx
import pytest

import edge_sched
from tests.cluster.daemon import HEALTH_PATH, EdgeSchedDaemon
from tests.cluster.ports import free_port
from tests.cluster.processes import Proc, minimal_env
from tests.cluster.waiting import wait_for

REPO = Path(__file__).resolve().parents[2]
PY_VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"
# Interpreters of this Python version that may be bare; the first one without numpy is used.
CANDIDATES = [Path("/usr/bin") / PY_VERSION, Path(sys._base_executable)]  # type: ignore[attr-defined]


@attrs.frozen
class Dist:
    exe: Path  # the built file, installed as <tmp>/bin/edge-sched
    archive: Path  # the file make wrote
    env: dict[str, str]  # PATH with the bare interpreter first, HOME and SHIV_ROOT under tmp
    tmp: Path


def bare_interpreter() -> Path:
    for candidate in CANDIDATES:
        if not candidate.is_file():
            continue
        probe = subprocess.run(
            [str(candidate), "-c", "import numpy"], capture_output=True, env=minimal_env(), timeout=30, check=False
        )
        if probe.returncode != 0:
            return candidate
    raise AssertionError(f"need a {PY_VERSION} without numpy installed (tried {CANDIDATES})")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Dist:
    tmp = tmp_path_factory.mktemp("dist")
    archive = tmp / "out" / "edge-sched.pyz"
    build = subprocess.run(
        ["make", "-C", str(REPO), "dist", f"DIST_OUT={archive}"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert build.returncode == 0, f"make dist failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    assert archive.is_file()
    exe = tmp / "bin" / "edge-sched"  # as /usr/local/bin/edge-sched: no suffix, mode 0755
    exe.parent.mkdir()
    shutil.copyfile(archive, exe)
    exe.chmod(0o755)
    python = bare_interpreter()
    # The shebang is `/usr/bin/env python3.X`: the interpreter's directory comes first on PATH.
    path = os.pathsep.join([str(python.parent), "/usr/bin", "/bin"])
    assert Path(shutil.which(PY_VERSION, path=path) or "").resolve() == python.resolve()
    env = minimal_env(PATH=path, HOME=str(tmp / "home"), SHIV_ROOT=str(tmp / "shiv-root"))
    return Dist(exe, archive, env, tmp)


def run_exe(dist: Dist, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    # cwd outside the checkout, so nothing of edge_sched/ can be imported from there.
    return subprocess.run(
        [str(dist.exe), *args],
        capture_output=True,
        text=True,
        env=dist.env,
        cwd=dist.tmp,
        timeout=timeout_s,
        check=False,
    )


def test_archive_holds_the_daemon_and_native_wheels_not_the_test_tools(dist: Dist) -> None:
    with zipfile.ZipFile(dist.archive) as zf:
        names = zf.namelist()
        page = zf.read("site-packages/edge_sched/static/index.html")
    assert dist.archive.read_bytes().startswith(f"#!/usr/bin/env {PY_VERSION}\n".encode())
    top = {n.split("/")[1] for n in names if n.startswith("site-packages/") and n.count("/") > 1}
    assert {"edge_sched", "trio", "hypercorn", "quart_trio", "kubernetes", "numpy", "yaml"} <= top
    assert not top & {"pytest", "hypothesis", "playwright", "scipy", "shiv"}, sorted(top)
    suffix = sysconfig.get_config_var("EXT_SUFFIX")  # .cpython-311-x86_64-linux-gnu.so
    assert any(n.startswith("site-packages/numpy/") and n.endswith(suffix) for n in names), suffix
    assert page == (REPO / "edge_sched" / "static" / "index.html").read_bytes()


def test_version_is_the_package_version(dist: Dist) -> None:
    result = run_exe(dist, "version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"edge-sched {edge_sched.__version__}\n"
    # It unpacked where SHIV_ROOT says (edge-sched_<build id>), not into ~/.shiv.
    unpacked = [p.name for p in (dist.tmp / "shiv-root").iterdir() if p.is_dir()]
    assert len(unpacked) == 1 and unpacked[0].startswith("edge-sched_"), unpacked
    assert not (dist.tmp / "home" / ".shiv").exists()


def test_report_help(dist: Dist) -> None:
    result = run_exe(dist, "report", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: edge-sched report")
    assert "--target HOST:PORT" in result.stdout


@pytest.fixture
def daemon(dist: Dist) -> Iterator[EdgeSchedDaemon]:
    """`edge-sched run` from the file, standalone (no kubeconfig, no service account), on free
    loopback ports, with the environment the systemd unit sets."""
    port = free_port()
    env = {
        **dist.env,
        "USE_SERVICE_ACCOUNT": "false",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "METRICS_PORT": str(free_port()),
        "UDP_SERVICE_HOST": "127.0.0.1",
        "UDP_SERVICE_PORT": str(free_port(udp=True)),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
    }
    workdir = dist.tmp / "run"
    workdir.mkdir(exist_ok=True)
    log = workdir / "edge-sched.log"
    proc = Proc.start("edge-sched (single file)", [str(dist.exe), "run"], log, env=env, cwd=workdir, port=port)
    d = EdgeSchedDaemon(proc, env, port)
    try:
        yield d
    finally:
        d.stop()


def test_run_serves_health_and_drains_on_sigterm(daemon: EdgeSchedDaemon) -> None:
    with httpx.Client(base_url=daemon.url, timeout=5) as http:
        # The first start may unpack and compile the file (about 10 s here); later ones do not.
        wait_for(
            lambda: http.get(HEALTH_PATH).status_code == 200,
            120,
            f"health 200 from the single-file daemon at {daemon.url}",
            procs=[daemon.proc],
            interval_s=0.3,
        )
        health = http.get(HEALTH_PATH).json()
        assert (health["status"], health["mode"]) == ("healthy", "standalone")
        assert health["components"]["kubernetes"] == "disabled"
        page = http.get("/")  # package data (edge_sched/static) is read from inside the file
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        metrics = httpx.get(f"http://127.0.0.1:{daemon.metrics_port}/metrics", timeout=5)
        assert metrics.status_code == 200 and "edge_sched_" in metrics.text
    started = time.monotonic()
    code = daemon.stop(timeout_s=10)
    assert code == 0, f"exit {code} after SIGTERM; log:\n{daemon.log_tail()}"
    assert time.monotonic() - started < 10
