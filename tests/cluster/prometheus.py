"""A real Prometheus scraping an exporter whose samples the test sets.

`Exporter` is a tiny HTTP server (a thread, free loopback port) serving the Prometheus
text format; `Prometheus` runs the Debian `prometheus` binary scraping it, so the daemon
queries a real PromQL engine: staleness, `rate`, `avg_over_time` behave as in production.
The scrape config uses `honor_labels: true` so a test may set `instance` and `job` itself
(the daemon maps series to nodes by `node` or by the host part of `instance`).
"""

from __future__ import annotations

import math
import os
import shutil
import threading
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from tests.cluster.ports import free_port
from tests.cluster.processes import Proc, minimal_env
from tests.cluster.waiting import wait_for

DEFAULT_PROMETHEUS = "/usr/bin/prometheus"
INSTALL_HINT = (
    "Prometheus is needed for the end-to-end tests: install it with `apt-get install -y prometheus` "
    "(Debian/Ubuntu), or point EDGE_SCHED_PROMETHEUS at a prometheus binary (2.x or 3.x)"
)

_Key = tuple[str, tuple[tuple[str, str], ...]]


class Exporter:
    """Serves `/metrics` with the samples set by the test (gauges, no timestamps).

    `exporter.set("edge_test_node_cpu_utilisation", {"node": "n1"}, 0.95)`.
    """

    def __init__(self) -> None:
        self._samples: dict[_Key, float] = {}
        self._lock = threading.Lock()
        exporter = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exporter.render().encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
                pass  # one line per scrape on stderr is noise

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="exporter", daemon=True
        )
        self._thread.start()

    @classmethod
    def start(cls) -> Exporter:
        return cls()

    @property
    def addr(self) -> str:
        """host:port, the form Prometheus targets take."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.addr}/metrics"

    def set(self, name: str, labels: Mapping[str, str], value: float) -> None:
        """Set (or add) the sample `name{labels} value`."""
        with self._lock:
            self._samples[_key(name, labels)] = float(value)

    def remove(self, name: str, labels: Mapping[str, str] | None = None) -> None:
        """Drop one sample, or every sample of `name` when `labels` is None."""
        with self._lock:
            if labels is not None:
                self._samples.pop(_key(name, labels), None)
            else:
                for key in [k for k in self._samples if k[0] == name]:
                    del self._samples[key]

    def clear(self) -> None:
        with self._lock:
            self._samples.clear()

    def render(self) -> str:
        """The exposition text (format 0.0.4)."""
        with self._lock:
            samples = sorted(self._samples.items())
        lines: list[str] = []
        typed: set[str] = set()
        for (name, labels), value in samples:
            if name not in typed:
                lines.append(f"# TYPE {name} gauge")
                typed.add(name)
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{name}{{{label_text}}} {_format_value(value)}" if labels else f"{name} {_format_value(value)}")
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        """Stop serving and close the socket. Idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    close = stop

    def __enter__(self) -> Exporter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class Prometheus:
    """The real Prometheus on a free loopback port. Build with `Prometheus.start(...)`.

    Attributes:
        url: http://127.0.0.1:<port> (the daemon's MONITOR_API_URL).
        proc: the process (log: <workdir>/prometheus.log).
    """

    def __init__(self, proc: Proc, url: str, config_path: Path) -> None:
        self.proc = proc
        self.url = url
        self.config_path = config_path

    @classmethod
    def start(
        cls,
        workdir: Path,
        targets: Iterable[str],
        scrape_interval_s: float = 1,
        *,
        binary: str | None = None,
        timeout_s: float = 30,
    ) -> Prometheus:
        """Start Prometheus scraping `targets` ("127.0.0.1:port") every `scrape_interval_s`.

        Raises:
            FileNotFoundError: no prometheus binary (the message says how to install one).
            ProcessExited, WaitTimeout: it did not become ready.
        """
        program = binary or os.environ.get("EDGE_SCHED_PROMETHEUS") or _find_prometheus()
        workdir = Path(workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        interval = f"{max(1, round(scrape_interval_s * 1000))}ms"
        config = {
            "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
            "scrape_configs": [
                {
                    "job_name": "edge-sched-e2e",
                    "honor_labels": True,
                    "static_configs": [{"targets": list(targets)}],
                }
            ],
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        port = free_port()
        proc = Proc.start(
            "prometheus",
            [
                program,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={workdir / 'prometheus-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--storage.tsdb.retention.time=1d",
                "--log.level=warn",
            ],
            workdir / "prometheus.log",
            env=minimal_env(),
            port=port,
        )
        prom = cls(proc, f"http://127.0.0.1:{port}", config_path)
        try:
            with httpx.Client(timeout=2) as c:
                wait_for(lambda: c.get(f"{prom.url}/-/ready").status_code == 200, timeout_s, "prometheus /-/ready",
                         procs=[proc])
        except BaseException:
            proc.stop()
            raise
        return prom

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Instant query; the `result` list (raises on an error status)."""
        with httpx.Client(timeout=5) as c:
            body = c.get(f"{self.url}/api/v1/query", params={"query": promql}).json()
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus query {promql!r} failed: {body}")
        return body["data"]["result"]

    def wait_for_series(self, query: str, timeout_s: float = 30) -> list[dict[str, Any]]:
        """Wait until `query` returns at least one series; return the result."""
        return wait_for(lambda: self.query(query), timeout_s, f"prometheus series for {query!r}", procs=[self.proc],
                        interval_s=0.25)

    def stop(self) -> None:
        self.proc.stop()

    def __enter__(self) -> Prometheus:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _find_prometheus() -> str:
    if os.access(DEFAULT_PROMETHEUS, os.X_OK):
        return DEFAULT_PROMETHEUS
    found = shutil.which("prometheus")
    if found is None:
        raise FileNotFoundError(INSTALL_HINT)
    return found


def _key(name: str, labels: Mapping[str, str]) -> _Key:
    return name, tuple(sorted((str(k), str(v)) for k, v in labels.items()))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)
