"""`edge-sched run` as a real subprocess in standalone mode, driven over real HTTP.

Standalone = no cluster configured (S4): every verb works on the nodes sent in
the request, bind answers a clear error, health says `kubernetes: disabled`.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import edge_sched

from tests.cluster.daemon import EdgeSchedDaemon
from tests.cluster.ports import free_port
from tests.cluster.processes import minimal_env

REPO = Path(__file__).resolve().parents[2]
POD = {
    "metadata": {"name": "web-0", "namespace": "default", "uid": "u-1"},
    "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}]},
}
NODES = {
    "items": [
        {"metadata": {"name": "big", "labels": {"zone": "z1"}}, "status": {"allocatable": {"cpu": "8", "memory": "16Gi", "pods": "110"}}},
        {"metadata": {"name": "small"}, "status": {"allocatable": {"cpu": "2", "memory": "2Gi", "pods": "110"}}},
        {"metadata": {"name": "tiny"}, "status": {"allocatable": {"cpu": "500m", "memory": "1Gi", "pods": "110"}}},
    ]
}


def standalone_env(tmp: Path, **extra: str) -> dict[str, str]:
    # HOME without a ~/.kube/config and no KUBECONFIG: no cluster is configured.
    return {"HOME": str(tmp), "USE_SERVICE_ACCOUNT": "false", "MAX_REQUEST_BYTES": "65536", **extra}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeSchedDaemon]:
    tmp = tmp_path_factory.mktemp("standalone")
    d = EdgeSchedDaemon.start(standalone_env(tmp), tmp, free_port())
    yield d
    d.stop()


@pytest.fixture
def http(daemon: EdgeSchedDaemon) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=daemon.api_url, timeout=10) as client:
        yield client


def test_health_reports_standalone(http: httpx.Client) -> None:
    r = http.get("/scheduler/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "healthy"
    assert body["mode"] == "standalone"
    assert body["components"]["kubernetes"] == "disabled"
    # edge-sched's own version, and the operator's APP_NAME / APP_VERSION labels (seed defaults).
    assert body["version"] == edge_sched.__version__
    assert (body["app"], body["app_version"]) == ("edge-scheduler", "1.0.0")


def test_filter_with_node_objects(http: httpx.Client) -> None:
    r = http.post("/filter", json={"Pod": POD, "Nodes": NODES, "NodeNames": None})
    assert r.status_code == 200
    body = r.json()
    assert [n["metadata"]["name"] for n in body["Nodes"]["items"]] == ["big", "small"]
    assert body["Nodes"]["items"][0] == NODES["items"][0]  # untouched
    assert body["FailedAndUnresolvableNodes"] == {"tiny": "insufficient cpu (need 1, free 500m)"}
    assert body["Error"] == ""


def test_filter_lower_case_keys_same_answer(http: httpx.Client) -> None:
    upper = http.post("/filter", json={"Pod": POD, "Nodes": NODES}).json()
    lower = http.post("/filter", json={"pod": POD, "nodes": NODES, "unknownKey": 1}).json()
    assert upper == lower


def test_filter_node_names_unknown_to_the_cache_pass(http: httpx.Client) -> None:
    body = http.post("/filter", json={"Pod": POD, "Nodes": None, "NodeNames": ["n1", "n2"]}).json()
    assert body == {"Nodes": None, "NodeNames": ["n1", "n2"], "FailedNodes": {}, "FailedAndUnresolvableNodes": {}, "Error": ""}


def test_prioritize_alias_plan_and_scores(http: httpx.Client) -> None:
    http.post("/filter", json={"Pod": POD, "Nodes": NODES})
    r = http.post("/prioritize", json={"Pod": POD, "Nodes": NODES})
    assert r.status_code == 200
    scores = {h["Host"]: h["Score"] for h in r.json()}
    assert scores["big"] == 10 and set(scores) == {"big", "small", "tiny"}
    assert all(isinstance(s, int) and 0 <= s <= 10 for s in scores.values())
    alias = http.post("/scheduler/priority", json={"Pod": POD, "Nodes": NODES})
    assert alias.json() == r.json()
    plan = http.get("/scheduler/plan/default/web-0").json()
    assert plan["selected_node"] == "big" and plan["algorithm"] == "default"
    assert plan["expires_at"] - plan["created_at"] == pytest.approx(300)
    assert http.get("/scheduler/plan/web-0").json()["selected_node"] == "big"
    scores_doc = http.get("/scheduler/scores/default/web-0").json()
    assert scores_doc["scores"]["big"]["score"] == 10
    assert "cpu_free" in scores_doc["scores"]["big"]["components"]
    missing = http.get("/scheduler/plan/default/nope")
    assert missing.status_code == 404 and "no current plan" in missing.json()["error"]


def test_bind_is_a_clear_error_in_standalone_mode(http: httpx.Client) -> None:
    r = http.post("/bind", json={"PodName": "web-0", "PodNamespace": "default", "PodUID": "u-1", "Node": "big"})
    assert r.status_code == 200
    assert "standalone mode" in r.json()["Error"]


def test_preempt_passes_victims_through(http: httpx.Client) -> None:
    r = http.post("/preempt", json={"Pod": POD, "NodeNameToMetaVictims": {"big": {"Pods": [{"UID": "v1"}], "NumPDBViolations": 0}}})
    assert r.json() == {"NodeNameToMetaVictims": {"big": {"Pods": [{"UID": "v1"}], "NumPDBViolations": 0}}}


@pytest.mark.parametrize(
    ("path", "content", "fragment"),
    [
        ("/filter", b"not json", "body: invalid JSON"),
        ("/filter", b"", "body: empty"),
        ("/filter", b"\xff\xfe", "body: not UTF-8"),
        ("/filter", b"[]", "body: expected a JSON object"),
        ("/filter", b'{"Nodes": null}', "Pod: required"),
        ("/prioritize", b'{"Pod": 3}', "Pod: expected an object"),
        ("/bind", b'{"PodName": "x"}', "PodUID: required"),
        ("/preempt", b'{"Pod": {}, "NodeNameToVictims": {"n": {"Pods": [{}]}}}', "UID required"),
    ],
)
def test_bad_bodies_get_400_naming_the_problem(http: httpx.Client, path: str, content: bytes, fragment: str) -> None:
    r = http.post(path, content=content, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert fragment in r.json()["Error"]


def test_oversize_body_gets_413(http: httpx.Client) -> None:
    r = http.post("/filter", content=b"{" + b" " * 70000 + b"}", headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    assert "MAX_REQUEST_BYTES" in r.json()["Error"]


def test_unknown_paths_and_methods_answer_json(http: httpx.Client) -> None:
    assert http.get("/nope").status_code == 404
    assert http.get("/nope").headers["content-type"] == "application/json"
    r = http.get("/filter")
    assert r.status_code == 405 and "Error" in r.json()


def test_metrics_count_the_calls(daemon: EdgeSchedDaemon, http: httpx.Client) -> None:
    http.post("/filter", json={"Pod": POD, "Nodes": NODES})
    http.post("/filter", content=b"nope")
    text = httpx.get(f"http://127.0.0.1:{daemon.metrics_port}/metrics").text
    assert 'edge_sched_extender_requests_total{outcome="ok",verb="filter"}' in text
    assert 'edge_sched_extender_requests_total{outcome="bad_request",verb="filter"}' in text
    assert "edge_sched_extender_request_duration_seconds_bucket" in text


def test_sigterm_drains_and_exits_zero_within_ten_seconds(tmp_path: Path) -> None:
    d = EdgeSchedDaemon.start(standalone_env(tmp_path), tmp_path, free_port())
    started = time.monotonic()
    code = d.stop(timeout_s=10)
    assert code == 0
    assert time.monotonic() - started < 10
    assert "received SIGTERM" in d.log_tail()


def _run_cli(tmp: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = minimal_env(PYTHONPATH=str(REPO))
    full.update(standalone_env(tmp, **env))
    return subprocess.run(
        [sys.executable, "-m", "edge_sched", *args], cwd=tmp, env=full, capture_output=True, text=True, timeout=30
    )


def test_port_already_taken_fails_fast_with_a_clear_message(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        started = time.monotonic()
        result = _run_cli(tmp_path, "run", HOST="127.0.0.1", PORT=str(port), METRICS_PORT=str(free_port()))
    assert result.returncode == 1
    assert "address already in use" in result.stderr
    assert time.monotonic() - started < 10


def test_bad_configuration_exits_2_naming_the_key(tmp_path: Path) -> None:
    result = _run_cli(tmp_path, "run", PORT="eighty")
    assert result.returncode == 2
    assert "PORT" in result.stderr and "from env" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_config_command_masks_secrets_and_shows_sources(tmp_path: Path) -> None:
    result = _run_cli(tmp_path, "config", "--sources", API_AUTH_TOKEN="s3cret", PORT="8123")
    assert result.returncode == 0
    assert "s3cret" not in result.stdout
    assert "API_AUTH_TOKEN=***" in result.stdout
    assert "PORT=8123" in result.stdout and "from env" in result.stdout


def test_config_command_warns_about_a_typo_in_the_env_file(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("PROT=8000\n", encoding="utf-8")
    result = _run_cli(tmp_path, "config")
    assert result.returncode == 0
    assert result.stderr.startswith("edge-sched: warning: ")
    assert "unknown key PROT ignored" in result.stderr


def test_scheduler_config_points_at_this_daemon(tmp_path: Path) -> None:
    import yaml

    result = _run_cli(tmp_path, "scheduler-config", PORT="8123")
    doc = yaml.safe_load(result.stdout)
    extender = doc["extenders"][0]
    assert doc["kind"] == "KubeSchedulerConfiguration"
    assert doc["profiles"] == [
        {"schedulerName": "edge-scheduler", "plugins": {"filter": {"disabled": [{"name": "NodeResourcesFit"}]}}}
    ]
    assert extender["urlPrefix"] == "http://127.0.0.1:8123/api/v1"
    assert extender["nodeCacheCapable"] is True
    assert {extender[k] for k in ("filterVerb", "prioritizeVerb", "bindVerb", "preemptVerb")} == {"filter", "prioritize", "bind", "preempt"}


def test_json_logs(tmp_path: Path) -> None:
    d = EdgeSchedDaemon.start(standalone_env(tmp_path, LOG_FORMAT="json"), tmp_path, free_port())
    d.stop()
    lines = [json.loads(line) for line in d.log_path.read_text().splitlines() if line.startswith("{")]
    assert any(entry["msg"].startswith("serving") for entry in lines)
