"""edge-sched itself as a subprocess (`python -m edge_sched run`), as operators run it.

The environment is explicit: a minimal base (PATH, HOME, PYTHONPATH = this checkout,
PYTHONUNBUFFERED) with the test's variables over it, so nothing from the developer's
shell (a KUBECONFIG, a stray PORT) leaks into what the test proves. Listening addresses
default to loopback and to free ports so several daemons and the test's own servers
never collide; the test may set any of them itself.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import httpx

from tests.cluster.ports import free_port
from tests.cluster.processes import Proc, minimal_env
from tests.cluster.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
HEALTH_PATH = "/api/v1/scheduler/health"


class EdgeSchedDaemon:
    """A running `edge-sched run`. Build with `EdgeSchedDaemon.start(env, workdir, port)`.

    Attributes:
        url: http://127.0.0.1:<port>
        port, metrics_port, udp_port: where it listens (from the final environment).
        env: the complete environment it runs with.
        proc: the process; its output is in `log_path` (<workdir>/edge-sched.log).
    """

    def __init__(self, proc: Proc, env: dict[str, str], port: int) -> None:
        self.proc = proc
        self.env = env
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.metrics_port = int(env["METRICS_PORT"])
        self.udp_port = int(env["UDP_SERVICE_PORT"])

    @classmethod
    def start(
        cls,
        env: Mapping[str, str],
        workdir: Path,
        port: int,
        *,
        args: Sequence[str] = (),
        timeout_s: float = 30,
    ) -> EdgeSchedDaemon:
        """Start the daemon with cwd=`workdir` and wait until its health endpoint answers 200.

        Args:
            env: the daemon's variables (KUBECONFIG, MONITOR_API_URL, …), merged over the base.
                PORT is set to `port`; HOST, METRICS_PORT, UDP_SERVICE_HOST and
                UDP_SERVICE_PORT default to 127.0.0.1 and free ports.
            workdir: working directory (a `.env` or `config.toml` there is read by the daemon).
            port: the HTTP port to wait on.
            args: extra arguments after `run`.
            timeout_s: how long to wait for health 200.

        Raises:
            ValueError: `env` sets PORT to something other than `port`.
            ProcessExited: the daemon exited during start-up (log tail in the message).
            WaitTimeout: health did not answer 200 in time (the daemon is stopped; log tail
                in the message).
        """
        if "PORT" in env and str(env["PORT"]) != str(port):
            raise ValueError(f"env PORT={env['PORT']} but port={port}")
        full_env = minimal_env(PYTHONPATH=str(REPO_ROOT), PYTHONUNBUFFERED="1")
        full_env.update(
            HOST="127.0.0.1",
            METRICS_PORT=str(free_port()),
            UDP_SERVICE_HOST="127.0.0.1",
            UDP_SERVICE_PORT=str(free_port(udp=True)),
        )
        full_env.update({k: str(v) for k, v in env.items()})
        full_env["PORT"] = str(port)
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        proc = Proc.start(
            "edge-sched",
            [sys.executable, "-m", "edge_sched", "run", *args],
            workdir / "edge-sched.log",
            env=full_env,
            cwd=workdir,
            port=port,
        )
        daemon = cls(proc, full_env, port)
        try:
            with httpx.Client(timeout=2) as c:
                wait_for(
                    lambda: c.get(daemon.url + HEALTH_PATH).status_code == 200,
                    timeout_s,
                    f"edge-sched health 200 at {daemon.url}{HEALTH_PATH}",
                    procs=[proc],
                    interval_s=0.2,
                )
        except BaseException:
            proc.stop()
            raise
        return daemon

    @property
    def api_url(self) -> str:
        """The extender's urlPrefix: http://127.0.0.1:<port>/api/v1."""
        return self.url + "/api/v1"

    @property
    def log_path(self) -> Path:
        return self.proc.log_path

    def log_tail(self, lines: int = 60) -> str:
        return self.proc.log_tail(lines)

    @property
    def alive(self) -> bool:
        return self.proc.alive

    def rss_kib(self) -> int:
        """Resident memory of the daemon process now (VmRSS from /proc, KiB)."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError(f"no VmRSS for pid {self.proc.pid}")

    def stop(self, timeout_s: float = 10) -> int:
        """SIGTERM, wait up to `timeout_s` (then SIGKILL); return the exit code
        (0 for a clean drain, negative when it had to be killed)."""
        code = self.proc.stop(timeout_s)
        assert code is not None
        return code

    def __enter__(self) -> EdgeSchedDaemon:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
