"""`edge-sched plan ...`: the task-planning API (spec S11) from a shell.

    edge-sched plan apply FILE [--dry-run]   submit a plan (.json, .yaml, .yml; `-` = stdin)
    edge-sched plan status NAME              phase and per-task state
    edge-sched plan list                     every stored plan
    edge-sched plan delete NAME              stop the plan and delete what it created

The daemon is found where this host's configuration says it listens (HOST/PORT, https when
TLS_CERT_FILE is set), or at `--url`; the bearer token is `--token`, else API_AUTH_TOKEN
from the same configuration. Exit codes: 0 done, 1 refused by the daemon or unreachable
(the message says why; an invalid plan prints every problem), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import httpx

PREFIX = "/task-planning"
TIMEOUT_S = 30.0


def add_plan_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="the daemon's API root, e.g. http://127.0.0.1:8000/api/v1 "
                                      "(default: from HOST/PORT of this configuration)")
    common.add_argument("--token", help="bearer token (default: API_AUTH_TOKEN of this configuration)")
    common.add_argument("--ca-file", help="CA bundle to verify an https daemon with")
    common.add_argument("--cert", help="client certificate (when the daemon requires one)")
    common.add_argument("--key", help="client certificate key")
    common.add_argument("--json", action="store_true", help="print the daemon's JSON answer as is")
    sub = parser.add_subparsers(dest="plan_command", required=True)
    apply = sub.add_parser("apply", parents=[common], help="submit a plan file (.json, .yaml, .yml; - for stdin)")
    apply.add_argument("file")
    apply.add_argument("--dry-run", action="store_true", help="validate and place only; deploy nothing")
    status = sub.add_parser("status", parents=[common], help="show a plan's phase and tasks")
    status.add_argument("name")
    sub.add_parser("list", parents=[common], help="list stored plans")
    delete = sub.add_parser("delete", parents=[common], help="stop a plan and delete what it created")
    delete.add_argument("name")


def _read(path: str) -> tuple[bytes, str]:
    """The file's bytes and the Content-Type to send them with."""
    if path == "-":
        raw = sys.stdin.buffer.read()
        return raw, "application/json" if raw.lstrip()[:1] in (b"{", b"[") else "application/yaml"
    suffix = Path(path).suffix.lower()
    if suffix not in (".json", ".yaml", ".yml"):
        raise ValueError(f"{path}: expected a .json, .yaml or .yml file")
    return Path(path).read_bytes(), "application/json" if suffix == ".json" else "application/yaml"


def _when(ts: float | None) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else "-"


def print_plan(plan: dict[str, Any], out: TextIO) -> None:
    """A plan answer (dry run or stored) for people."""
    tasks: dict[str, Any] = plan.get("tasks") or {}
    print(f"plan {plan['plan_name']}: {plan['phase']} ({len(tasks)} tasks, {len(plan.get('stages', []))} stages)",
          file=out)
    if plan.get("problem"):
        print(f"  problem: {plan['problem']}", file=out)
    print("  order:  " + " -> ".join(plan.get("serialized_tasks", [])), file=out)
    for i, stage in enumerate(plan.get("stages", [])):
        print(f"  stage {i}: {', '.join(stage)}", file=out)
    if plan.get("placement_note"):
        print(f"  placement: {plan['placement_note']}", file=out)
    rows = [("TASK", "KIND", "PHASE", "TRIES", "NODE", "PLANNED", "STARTED", "FINISHED", "LAST ERROR")]
    for tid, t in tasks.items():
        rows.append((tid, t.get("kind", ""), t.get("phase", ""), str(len(t.get("attempts") or [])),
                     t.get("node") or "-", t.get("planned_node") or "-", _when(t.get("started_at")),
                     _when(t.get("finished_at")), t.get("last_error") or ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1], file=out)


def _refusal(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:300]}"
    lines = [str(body.get("error") or body.get("Error") or f"HTTP {response.status_code}")]
    lines += [f"  - {p}" for p in body.get("problems") or []]
    return "\n".join(lines)


def main_plan(args: argparse.Namespace, default_url: str, default_token: str | None) -> int:
    """Run one `plan` subcommand; returns the exit code."""
    url = (args.url or default_url).rstrip("/") + PREFIX
    token = args.token or default_token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    verify: Any = args.ca_file or True
    cert = (args.cert, args.key) if args.cert else None
    try:
        with httpx.Client(base_url=url, headers=headers, timeout=TIMEOUT_S, verify=verify, cert=cert) as client:
            if args.plan_command == "apply":
                try:
                    raw, content_type = _read(args.file)
                except (OSError, ValueError) as exc:
                    print(f"edge-sched: {exc}", file=sys.stderr)
                    return 2
                params = {"deploy": "false"} if args.dry_run else {}
                response = client.post("/plans", params=params, content=raw, headers={"Content-Type": content_type})
            elif args.plan_command == "status":
                response = client.get(f"/plans/{args.name}")
            elif args.plan_command == "list":
                response = client.get("/plans")
            else:
                response = client.delete(f"/plans/{args.name}")
    except httpx.HTTPError as exc:
        print(f"edge-sched: cannot reach the daemon at {url}: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 1
    if response.status_code >= 400:
        print(f"edge-sched: {_refusal(response)}", file=sys.stderr)
        return 1
    body = response.json()
    if args.json:
        print(json.dumps(body, indent=2))
    elif args.plan_command == "list":
        for p in body.get("plans", []):
            phases = ", ".join(f"{k} {v}" for k, v in sorted(p.get("task_phases", {}).items()))
            print(f"{p['plan_name']}: {p['phase']} ({p['tasks']} tasks: {phases})")
        for name, why in (body.get("unreadable") or {}).items():
            print(f"{name}: unreadable ({why})")
        if not body.get("plans") and not body.get("unreadable"):
            print(f"no task plans ({body.get('mode', '?')} mode)")
    elif args.plan_command == "delete":
        print(f"plan {args.name}: deleted" if body.get("deleted") else f"plan {args.name}: {body.get('note')}")
    else:
        print_plan(body, sys.stdout)
    return 0
