"""The task-planning API (spec S11) of a real `edge-sched run` in standalone mode.

Standalone (no cluster): dry runs work for JSON, YAML and uploaded files; deploying answers
503 with what to do instead; every invalid plan gets 400 listing all its problems;
API_AUTH_TOKEN guards the mutating calls. Deploying for real is tests/e2e/test_task_plans.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.cluster.daemon import EdgeSchedDaemon
from tests.cluster.ports import free_port
from tests.cluster.processes import minimal_env

REPO = Path(__file__).resolve().parents[2]

TOKEN = "plan-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeSchedDaemon]:
    tmp = tmp_path_factory.mktemp("task-planning")
    env = {"HOME": str(tmp), "USE_SERVICE_ACCOUNT": "false", "API_AUTH_TOKEN": TOKEN,
           "TASK_PLANNING_MAX_TASKS": "5", "TASK_PLANNING_DEFAULT_NAMESPACE": "ml"}
    d = EdgeSchedDaemon.start(env, tmp, free_port())
    yield d
    d.stop()


@pytest.fixture
def api(daemon: EdgeSchedDaemon) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=daemon.api_url + "/task-planning", timeout=10, headers=AUTH) as client:
        yield client


def example(api: httpx.Client) -> dict[str, Any]:
    r = api.get("/example")
    assert r.status_code == 200
    return dict(r.json())


def test_example_is_the_reference_pipeline_in_json_and_yaml(api: httpx.Client) -> None:
    doc = example(api)
    assert [t["task_id"] for t in doc["tasks"]] == ["data-prep", "training", "evaluation", "deployment"]
    r = api.get("/example", params={"format": "yaml"})
    assert r.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(r.text) == doc


def test_dry_run_answers_order_stages_and_placements(api: httpx.Client) -> None:
    r = api.post("/plans", params={"deploy": "false"}, json=example(api))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["phase"] == "dry-run"
    assert body["deployed"] is False
    assert body["serialized_tasks"] == ["data-prep", "training", "evaluation", "deployment"]
    assert body["stages"] == [["data-prep"], ["training"], ["evaluation"], ["deployment"]]
    assert isinstance(body["placements"], dict)
    assert "placement_note" in body
    assert body["tasks"]["training"]["namespace"] == "ml"  # TASK_PLANNING_DEFAULT_NAMESPACE
    assert body["tasks"]["deployment"]["kind"] == "service"
    assert api.get("/plans").json() == {"mode": "standalone", "plans": []}  # nothing stored


def test_yaml_body_and_uploaded_files(api: httpx.Client) -> None:
    doc = example(api)
    text = yaml.safe_dump(doc)
    r = api.post("/plans?deploy=false", content=text, headers={"Content-Type": "application/yaml"})
    assert r.status_code == 200
    assert r.json()["plan_name"] == "ml-pipeline"
    for filename, content in (("plan.yaml", text), ("plan.yml", text), ("plan.json", json.dumps(doc))):
        r = api.post("/upload?deploy=false", files={"file": (filename, content.encode())})
        assert r.status_code == 200, (filename, r.text)
        assert r.json()["serialized_tasks"][0] == "data-prep"


def test_upload_refusals(api: httpx.Client) -> None:
    r = api.post("/upload?deploy=false", files={"file": ("plan.txt", b"{}")})
    assert r.status_code == 400
    assert r.json()["error"] == "file: 'plan.txt' is not a .json, .yaml or .yml file"
    r = api.post("/upload?deploy=false", data={"x": "y"})
    assert r.status_code == 400
    assert "field named 'file'" in r.json()["error"]
    r = api.post("/upload?deploy=false", files={"file": ("plan.yaml", b"a: [1,\n")})
    assert r.status_code == 400
    assert r.json()["problems"][0].startswith("body: invalid YAML")


def test_deploying_in_standalone_mode_is_a_clear_503(api: httpx.Client) -> None:
    r = api.post("/plans", json=example(api))
    assert r.status_code == 503
    assert "standalone mode" in r.json()["error"]
    assert "?deploy=false" in r.json()["error"]
    assert api.delete("/plans/ml-pipeline").status_code == 503
    assert api.get("/plans/ml-pipeline").status_code == 404


def test_invalid_plans_get_400_with_every_problem(api: httpx.Client) -> None:
    doc = {
        "plan_name": "Bad Plan",
        "tasks": [
            {"task_id": "a", "name": "A", "image": "i", "cpu": "2 cores", "memory": "1Gi", "dependencies": ["b"]},
            {"task_id": "b", "name": "B", "image": "i", "cpu": "1", "memory": "1Gi", "dependencies": ["a", "nope"]},
            {"task_id": "a", "name": "A", "image": "i", "cpu": "1", "memory": "1Gi"},
        ],
    }
    r = api.post("/plans", json=doc)
    assert r.status_code == 400
    body = r.json()
    assert body["error"] == "plan 'Bad Plan' is invalid: 5 problems; fix them and send it again"
    assert [p.split(": ")[0] for p in body["problems"]] == [
        "plan_name", "tasks[0].cpu", "tasks[2].task_id", "tasks[1].dependencies[1]", "tasks",
    ]
    joined = "\n".join(body["problems"])
    for fragment in ("not a DNS label", "'2 cores'", "already the id of tasks[0]", "unknown task 'nope'",
                     "dependency cycle a -> b -> a"):
        assert fragment in joined


def test_too_many_tasks_names_the_limit(api: httpx.Client) -> None:
    tasks = [{"task_id": f"t{i}", "name": "t", "image": "i", "cpu": "1", "memory": "1Gi"} for i in range(6)]
    r = api.post("/plans?deploy=false", json={"plan_name": "big", "tasks": tasks})
    assert r.status_code == 400
    assert r.json()["problems"] == [
        "tasks: 6 tasks, at most 5 are allowed (TASK_PLANNING_MAX_TASKS); split the plan or raise the limit"
    ]


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        ({"content": b"{", "headers": {"Content-Type": "application/json"}}, 400, "body: invalid JSON"),
        ({"content": b"", "headers": {"Content-Type": "application/json"}}, 400, "body: empty"),
        ({"content": b"<plan/>", "headers": {"Content-Type": "application/xml"}}, 415, "application/yaml"),
        ({"json": [], "params": {"deploy": "maybe"}}, 400, "deploy: 'maybe' is not a boolean"),
    ],
)
def test_bad_requests(api: httpx.Client, kwargs: dict[str, Any], status: int, fragment: str) -> None:
    r = api.post("/plans", **kwargs)
    assert r.status_code == status
    body = r.json()
    assert fragment in (body.get("error", "") + " ".join(body.get("problems", []))), body


def test_mutating_calls_need_the_bearer_token(daemon: EdgeSchedDaemon) -> None:
    with httpx.Client(base_url=daemon.api_url + "/task-planning", timeout=10) as anonymous:
        doc = anonymous.get("/example").json()  # reads stay open
        assert anonymous.get("/plans").status_code == 200
        assert anonymous.post("/plans?deploy=false", json=doc).status_code == 401
        upload = {"file": ("p.json", json.dumps(doc).encode())}
        assert anonymous.post("/upload?deploy=false", files=upload).status_code == 401
        assert anonymous.delete("/plans/x").status_code == 401
        wrong = {"Authorization": "Bearer nope"}
        assert anonymous.post("/plans?deploy=false", json=doc, headers=wrong).status_code == 401


def test_health_and_metrics_show_task_planning(daemon: EdgeSchedDaemon) -> None:
    health = httpx.get(daemon.api_url + "/scheduler/health", timeout=5).json()
    assert health["components"]["task_planning"] == "standalone (dry runs only)"
    text = httpx.get(f"http://127.0.0.1:{daemon.metrics_port}/metrics", timeout=5).text
    assert 'edge_sched_task_plans{phase="running"} 0.0' in text


# ---------------------------------------------------------------- the CLI


def cli(daemon: EdgeSchedDaemon, tmp: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = minimal_env(PYTHONPATH=str(REPO), HOME=str(tmp), API_AUTH_TOKEN=TOKEN)
    return subprocess.run(
        [sys.executable, "-m", "edge_sched", "plan", *args, "--url", daemon.api_url],
        capture_output=True, text=True, env=env, cwd=tmp, input=stdin, timeout=60, check=False,
    )


def test_cli_apply_dry_run_prints_order_and_stages(daemon: EdgeSchedDaemon, tmp_path: Path, api: httpx.Client) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(example(api)))
    done = cli(daemon, tmp_path, "apply", str(path), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "plan ml-pipeline: dry-run (4 tasks, 4 stages)"
    assert "order:  data-prep -> training -> evaluation -> deployment" in done.stdout
    as_json = cli(daemon, tmp_path, "apply", "-", "--dry-run", "--json", stdin=json.dumps(example(api)))
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["phase"] == "dry-run"


def test_cli_reports_refusals_with_every_problem(daemon: EdgeSchedDaemon, tmp_path: Path, api: httpx.Client) -> None:
    bad = example(api)
    bad["tasks"][1]["dependencies"] = ["data-prpe"]
    bad["tasks"][2]["cpu"] = "lots"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    done = cli(daemon, tmp_path, "apply", str(path), "--dry-run")
    assert done.returncode == 1
    assert "plan 'ml-pipeline' is invalid: 2 problems" in done.stderr
    assert "  - tasks[1].dependencies[0]: unknown task 'data-prpe'; did you mean 'data-prep'?" in done.stderr
    assert "  - tasks[2].cpu: 'lots'" in done.stderr
    deploy = cli(daemon, tmp_path, "apply", str(tmp_path / "bad.json"))
    assert deploy.returncode == 1
    wrong = tmp_path / "plan.txt"
    wrong.write_text("{}")
    assert cli(daemon, tmp_path, "apply", str(wrong)).returncode == 2
    status = cli(daemon, tmp_path, "status", "nope")
    assert status.returncode == 1
    assert "no task plan named 'nope'" in status.stderr
    listed = cli(daemon, tmp_path, "list")
    assert listed.returncode == 0
    assert listed.stdout.strip() == "no task plans (standalone mode)"


def test_disabled_task_planning_has_no_endpoints(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "USE_SERVICE_ACCOUNT": "false", "TASK_PLANNING_ENABLED": "false"}
    with EdgeSchedDaemon.start(env, tmp_path, free_port()) as daemon:
        assert httpx.get(daemon.api_url + "/task-planning/plans", timeout=5).status_code == 404
        assert httpx.get(daemon.api_url + "/task-planning/example", timeout=5).status_code == 404
        health = httpx.get(daemon.api_url + "/scheduler/health", timeout=5).json()
        assert "task_planning" not in health["components"]
        text = httpx.get(f"http://127.0.0.1:{daemon.metrics_port}/metrics", timeout=5).text
        assert "edge_sched_task_plans" not in text
