"""Child processes of the harness: start with a log file, stop for sure, show the log tail.

Every program the harness runs (etcd, the Kubernetes components, kwok, Prometheus, the
daemon) is a `Proc`. Its stdout and stderr go to one file in the work directory so that a
failing test can print the tail instead of losing the output. Processes start in their
own session so a Ctrl-C in the terminal reaches only the harness, which then stops them
in order; an `atexit` hook stops whatever is still running if a test run ends abruptly.
"""

from __future__ import annotations

import atexit
import collections
import os
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import FrameType

# Procs started and not yet stopped, so that atexit can stop them even when the
# caller dropped its reference (strong references on purpose).
_running: set[Proc] = set()


def interrupt_on_signals() -> None:
    """Make SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt in the main thread.

    A harness entry point (the demo, `python -m tests.cluster up`) then tears its processes
    down in its `finally` whichever way it is stopped: SIGTERM's default action would end
    Python without running `finally` or `atexit`, and a shell that starts a job in the
    background hands it SIGINT set to ignored, so Ctrl-C would do nothing.
    """

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)


class ProcessExited(RuntimeError):
    """A process the harness waits on exited when it should be running."""


class Proc:
    """One child process whose output goes to `log_path`.

    Attributes:
        name: short name used in messages ("kube-apiserver").
        argv: the command line.
        log_path: file receiving stdout and stderr (appended across restarts).
        port: the main port the process serves on, when the harness chose one.
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        port: int | None = None,
    ) -> None:
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.port = port
        self._popen: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(
        cls,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        port: int | None = None,
    ) -> Proc:
        """Start `argv` with output appended to `log_path`.

        Raises:
            FileNotFoundError: the program does not exist.
        """
        proc = cls(name, argv, log_path, env=env, cwd=cwd, port=port)
        proc._spawn()
        return proc

    def _spawn(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"=== {time.strftime('%H:%M:%S')} start: {' '.join(self.argv)}\n".encode())
            log.flush()
            # The child keeps its own copy of the descriptor; ours closes with the block.
            self._popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )
        _running.add(self)

    def restart(self) -> None:
        """Stop the process if it runs, then start the same command again (same log)."""
        self.stop()
        self._spawn()

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    @property
    def alive(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen else None

    def check_alive(self) -> None:
        """Raise `ProcessExited` (with the log tail) if the process is not running."""
        if not self.alive:
            raise ProcessExited(
                f"{self.name} exited with code {self.returncode}; last lines of {self.log_path}:\n"
                f"{self.log_tail()}"
            )

    def terminate(self) -> None:
        """Send SIGTERM without waiting (see `stop`)."""
        if self.alive:
            assert self._popen is not None
            self._popen.send_signal(signal.SIGTERM)

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """SIGTERM, wait up to `timeout_s`, then SIGKILL. Idempotent.

        Returns:
            The exit code (negative for a signal), or None if it never started.
        """
        if self._popen is None:
            return None
        self.terminate()
        try:
            self._popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._popen.kill()
            self._popen.wait()
        _running.discard(self)
        return self._popen.returncode

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the log (empty if there is none yet)."""
        try:
            with open(self.log_path, "rb") as log:
                tail = collections.deque(log, maxlen=lines)
        except FileNotFoundError:
            return ""
        return b"".join(tail).decode(errors="replace")

    def __repr__(self) -> str:
        state = "running" if self.alive else f"exited {self.returncode}"
        return f"<Proc {self.name} pid={self.pid} {state} log={self.log_path}>"


def stop_all(procs: Iterable[Proc], timeout_s: float = 5.0) -> None:
    """Stop several processes at once: SIGTERM to all, then wait for each (SIGKILL late ones)."""
    procs = [p for p in procs if p is not None]
    for proc in procs:
        proc.terminate()
    deadline = time.monotonic() + timeout_s
    for proc in procs:
        proc.stop(max(0.1, deadline - time.monotonic()))


def minimal_env(**extra: str) -> dict[str, str]:
    """PATH and HOME of this process plus `extra`: what the children need, nothing leaked."""
    env = {k: os.environ[k] for k in ("PATH", "HOME") if k in os.environ}
    env.update(extra)
    return env


@atexit.register
def _stop_leftovers() -> None:
    stop_all(list(_running), timeout_s=3.0)
