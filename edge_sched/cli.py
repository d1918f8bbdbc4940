"""`edge-sched` command line: argv -> settings -> one trio.run.

Exit codes: 0 clean stop, 1 runtime failure (e.g. a port already taken),
2 configuration or usage error — each with one line saying what to fix.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
from collections.abc import Sequence

import trio
import yaml

from edge_sched import __version__
from edge_sched.adapters.plan_client import add_plan_arguments, main_plan
from edge_sched.adapters.reporter import add_report_arguments, main_report
from edge_sched.codecs.scheduler_config import scheduler_configuration
from edge_sched.settings import ConfigError, LoadedSettings, load_settings, render_settings

log = logging.getLogger("edge_sched")


def _parser() -> argparse.ArgumentParser:
    config_help = "TOML config file (else $EDGE_SCHED_CONFIG, else ./config.toml)"
    parser = argparse.ArgumentParser(prog="edge-sched", description=__doc__.splitlines()[0])
    parser.add_argument("--config", metavar="PATH", help=config_help)
    # `edge-sched run --config x.toml` as well as `edge-sched --config x.toml run`: the
    # subcommand's option only overrides the top-level one when it is given.
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=config_help)
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[after])

    command("run", help="run the daemon")
    config = command("config", help="print the effective configuration")
    config.add_argument("--sources", action="store_true", help="show where each value came from")
    command("version", help="print the version")
    report = command("report", help="node agent: send computing-power reports over UDP (spec S6.6)")
    add_report_arguments(report)
    plan = command("plan", help="task plans on a running daemon: apply, status, list, delete (spec S11)")
    add_plan_arguments(plan)
    sched = command(
        "scheduler-config", help="print a KubeSchedulerConfiguration whose extender is this daemon"
    )
    sched.add_argument("--extender-url", help="URL kube-scheduler uses to reach the API root (default: from HOST/PORT)")
    sched.add_argument("--kubeconfig", help="kubeconfig kube-scheduler itself uses")
    sched.add_argument("--no-node-cache", action="store_true", help="nodeCacheCapable: false (send full Node objects)")
    sched.add_argument("--leader-elect", action="store_true", help="enable leader election (several replicas)")
    return parser


def _extender_url(loaded: LoadedSettings) -> str:
    server = loaded.settings.server
    host = "127.0.0.1" if server.host in ("0.0.0.0", "::", "") else server.host
    scheme = "https" if server.tls_cert_file else "http"
    return f"{scheme}://{host}:{server.port}{server.api_root}"


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


def _run(loaded: LoadedSettings) -> int:
    from edge_sched.adapters.kube_client import load_kube_target
    from edge_sched.runtime.supervisor import run_daemon

    settings = loaded.settings
    kube = settings.kube
    target = load_kube_target(use_service_account=kube.use_service_account, kubeconfig=kube.kubeconfig)
    if target is None:
        log.warning("no Kubernetes cluster configured: standalone mode (bind and deploys disabled)")
    else:
        log.info("Kubernetes API %s (credentials: %s)", target.server, target.source)
    code = 0
    try:
        trio.run(run_daemon, settings, target)
    except* OSError as group:
        code = 1
        for exc in _leaves(group):
            if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
                print(f"edge-sched: cannot listen: address already in use ({exc})", file=sys.stderr)
            else:
                print(f"edge-sched: {exc}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "report":  # a node agent: reads no daemon settings
        return main_report(args)
    if args.command == "version":
        print(f"edge-sched {__version__}")
        return 0
    try:
        loaded = load_settings(args.config)
    except ConfigError as exc:
        print(f"edge-sched: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command == "config":
        for warning in loaded.warnings:  # e.g. a typo in .env, which the daemon would only log
            print(f"edge-sched: warning: {warning}", file=sys.stderr)
        print(render_settings(loaded, show_sources=args.sources))
        return 0
    if args.command == "plan":
        return main_plan(args, _extender_url(loaded), loaded.settings.server.auth_token)
    if args.command == "scheduler-config":
        document = scheduler_configuration(
            scheduler_name=loaded.settings.kube.scheduler_name,
            extender_url=args.extender_url or _extender_url(loaded),
            kubeconfig=args.kubeconfig,
            node_cache_capable=not args.no_node_cache,
            http_timeout_s=loaded.settings.scheduler.filter_timeout_s,
            leader_elect=args.leader_elect,
        )
        print(yaml.safe_dump(document, sort_keys=False), end="")
        return 0
    from edge_sched.logs import configure_logging

    app = loaded.settings.app
    configure_logging("DEBUG" if app.debug else app.log_level, app.log_format)
    return _run(loaded)
