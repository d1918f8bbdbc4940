"""The key table: every configuration key, once, with everything known about it.

`KEYS` is the single source of truth for configuration. The settings classes take their defaults
and validators from it, the loader its ENV and TOML names and parsers, and `config.toml.example`
and the table in `docs/configuration.md` are generated from it (tests keep them in sync). Adding
a key means one row here plus one attribute on its section class; a test fails until both exist.

Names and defaults of the seed deployment guide's variables are contract (spec S3) and must not be
changed; where the spec overrides the seed (UDP_SERVICE_PORT=8001) the row says so.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING, Any, Final

import attrs

from edge_sched.config._kinds import (
    Bool,
    Choice,
    CidrList,
    Float,
    Int,
    Invalid,
    Kind,
    OptionalPath,
    OptionalText,
    Text,
)

if TYPE_CHECKING:
    from collections.abc import Mapping


@attrs.frozen
class KeySpec:
    """One configuration key.

    Attributes:
        section: TOML table and `Settings` attribute holding the section (`server`).
        field: attribute of the section class and key inside the TOML table (`port`).
        env: environment / `.env` name (`PORT`).
        kind: parser, checker and renderer of the value.
        default: built-in default, already typed (what `kind.parse` would return).
        doc: one line for the operator.
        secret: printed as `***` and never echoed in error messages.
        in_toml: False for a second ENV name of a switch that TOML spells once.
        example: a sample value for keys that are unset by default (shown in the example file).
    """

    section: str
    field: str
    env: str
    kind: Kind[Any]
    default: Any
    doc: str
    secret: bool = False
    in_toml: bool = True
    example: str | None = None

    @property
    def toml_name(self) -> str:
        """Dotted TOML name, `server.port`."""
        return f"{self.section}.{self.field}"

    @property
    def label(self) -> str:
        """How errors name the key: `PORT (server.port)`."""
        return f"{self.env} ({self.toml_name})"


# Shared kinds. Timeouts and intervals are seconds and must be positive unless stated.
_PORT: Final = Int(1, 65535, invalid="is not a valid port", name="port")
_SECONDS: Final = Float(0.0, min_exclusive=True, unit="seconds")
_SECONDS_OR_ZERO: Final = Float(0.0, unit="seconds")
_WEIGHT: Final = Float(0.0, 1.0)
_RATIO_POSITIVE: Final = Float(0.0, min_exclusive=True)
_TEXT: Final = Text()
_HOST: Final = Text(
    pattern=r"[^\s/]+",
    description="a host name or IP address",
    problem="is not a valid host",
    name="host",
)
_DNS_LABEL: Final = Text(
    pattern=r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?",
    description="a DNS label (lowercase letters, digits and '-', at most 63 characters)",
    problem="is not a valid DNS label",
    name="DNS label",
)

# Keys grouped by section, in the order `edge-sched config` prints them. One row per key reads
# better as a table than as the formatter's one-argument-per-line layout.
# fmt: off
KEYS: Final[tuple[KeySpec, ...]] = (
    # -- app ---------------------------------------------------------------------------------
    KeySpec("app", "name", "APP_NAME", _TEXT, "edge-scheduler",
            "Application name reported in logs and by the health endpoint."),
    KeySpec("app", "version", "APP_VERSION", _TEXT, "1.0.0",
            "Application version label, shown as app_version next to APP_NAME (app) by the health endpoint."),
    KeySpec("app", "debug", "DEBUG", Bool(), False,
            "Debug mode: extra diagnostics in logs and error answers; keep false in production."),
    KeySpec("app", "log_level", "LOG_LEVEL", Choice(("DEBUG", "INFO", "WARNING", "ERROR")), "INFO",
            "Lowest level of log records written."),
    KeySpec("app", "log_format", "LOG_FORMAT", Choice(("text", "json")), "text",
            "Log line format: text for people, json for log collectors."),
    # -- server ------------------------------------------------------------------------------
    KeySpec("server", "host", "HOST", _HOST, "0.0.0.0",
            "Address the HTTP server (extender API, WebSocket feed, status page) listens on."),
    KeySpec("server", "port", "PORT", _PORT, 8000,
            "TCP port of the HTTP server."),
    KeySpec("server", "api_v1_prefix", "API_V1_PREFIX",
            Text(pattern=r"(/[^/\s]+)+",
                 description="a path that starts with '/' and does not end with '/' (e.g. /v1)",
                 problem="is not a valid API prefix", name="path prefix"),
            "/v1",
            "Appended to /api to form the API root (default /api/v1)."),
    KeySpec("server", "max_request_bytes", "MAX_REQUEST_BYTES", Int(1024), 67108864,
            "Largest request body accepted, in bytes; larger bodies get HTTP 413."),
    KeySpec("server", "tls_cert_file", "TLS_CERT_FILE", OptionalPath(), None,
            "PEM certificate chain: serve HTTPS (needs TLS_KEY_FILE); unset serves plain HTTP.",
            example="/etc/edge-sched/tls/tls.crt"),
    KeySpec("server", "tls_key_file", "TLS_KEY_FILE", OptionalPath(), None,
            "PEM private key of TLS_CERT_FILE (set both or neither).",
            example="/etc/edge-sched/tls/tls.key"),
    KeySpec("server", "tls_client_ca_file", "TLS_CLIENT_CA_FILE", OptionalPath(), None,
            "PEM CA bundle: require client certificates signed by it (needs TLS_CERT_FILE and TLS_KEY_FILE).",
            example="/etc/edge-sched/tls/ca.crt"),
    KeySpec("server", "auth_token", "API_AUTH_TOKEN",
            OptionalText(pattern=r"[\x21-\x7e]+",
                         description="visible ASCII characters without spaces, or empty for unset",
                         problem="contains characters not allowed in an HTTP header",
                         name="string, optional"),
            None,
            "Bearer token every mutating call except the extender verbs needs when set; printed as `***`.",
            secret=True, example="replace-with-a-long-random-token"),
    KeySpec("server", "shutdown_grace_s", "SHUTDOWN_GRACE_PERIOD", Float(0.0, 60.0, unit="seconds"), 8.0,
            "Time in-flight requests get to finish after SIGTERM/SIGINT before they are cancelled."),
    # -- kube --------------------------------------------------------------------------------
    KeySpec("kube", "use_service_account", "USE_SERVICE_ACCOUNT", Bool(), True,
            "Use the in-cluster service account; false uses a kubeconfig (KUBECONFIG, else ~/.kube/config)."),
    KeySpec("kube", "namespace", "KUBE_NAMESPACE", _DNS_LABEL, "edge-scheduler",
            "Namespace the scheduler runs in and keeps its own objects (task-plan state) in."),
    KeySpec("kube", "kubeconfig", "KUBECONFIG",
            OptionalText(description="a kubeconfig path (or ':'-separated list), or empty for unset",
                         name="path list, optional"),
            None,
            "Kubeconfig used when USE_SERVICE_ACCOUNT is false; unset means ~/.kube/config.",
            example="/etc/edge-sched/kubeconfig"),
    KeySpec("kube", "scheduler_name", "SCHEDULER_NAME", _TEXT, "edge-scheduler",
            "kube-scheduler profile that calls this extender; set as schedulerName on pods we create."),
    KeySpec("kube", "request_timeout_s", "KUBE_REQUEST_TIMEOUT", _SECONDS, 10.0,
            "Time one Kubernetes API request may take."),
    KeySpec("kube", "watch_backoff_max_s", "KUBE_WATCH_BACKOFF_MAX", _SECONDS, 30.0,
            "Longest wait between reconnects of a failing watch."),
    KeySpec("kube", "assumed_pod_ttl_s", "ASSUMED_POD_TTL", _SECONDS, 30.0,
            "How long a pod we bound counts on its node before the watch shows it."),
    # -- scheduler ---------------------------------------------------------------------------
    KeySpec("scheduler", "filter_timeout_s", "SCHEDULER_FILTER_TIMEOUT", _SECONDS, 5.0,
            "Filter and prioritize always answer within this time, using fallbacks for slow inputs."),
    KeySpec("scheduler", "max_pods_per_node", "MAX_PODS_PER_NODE", Int(1), 110,
            "Pod limit per node, on top of the node's own pods allocatable."),
    KeySpec("scheduler", "enable_gpu_scheduling", "ENABLE_GPU_SCHEDULING", Bool(), False,
            "Steer GPU pods strongly towards nodes with free GPU power."),
    KeySpec("scheduler", "plan_expiration_s", "PLAN_EXPIRATION_TIME", _SECONDS, 300.0,
            "How long a pod's scheduling plan (scores, selected node) stays valid."),
    KeySpec("scheduler", "bind_follow_plan", "BIND_FOLLOW_PLAN", Bool(), True,
            "Bind to the planned node when an unexpired plan selects a different node that passed filter."),
    # -- optimizer ---------------------------------------------------------------------------
    KeySpec("optimizer", "enabled", "ENABLE_OPTIMIZER", Bool(), True,
            "Score nodes; false gives every node 0 (the extender then only filters)."),
    KeySpec("optimizer", "weight_cpu", "WEIGHT_CPU", _WEIGHT, 0.6,
            "Weight of free CPU in the node score (CPU and memory weights are normalised to sum 1)."),
    KeySpec("optimizer", "weight_memory", "WEIGHT_MEMORY", _WEIGHT, 0.4,
            "Weight of free memory in the node score (not both weights may be 0)."),
    KeySpec("optimizer", "algorithm", "OPTIMIZER_ALGORITHM", Choice(("default", "genetic")), "default",
            "Placement of task-plan pods: default (greedy by score) or genetic (joint GA)."),
    KeySpec("optimizer", "ga_population_size", "GA_POPULATION_SIZE", Int(2, 1000), 50,
            "Genetic algorithm: chromosomes per generation."),
    KeySpec("optimizer", "ga_generations", "GA_GENERATIONS", Int(1, 100000), 100,
            "Genetic algorithm: number of generations."),
    KeySpec("optimizer", "ga_mutation_rate", "GA_MUTATION_RATE", _WEIGHT, 0.1,
            "Genetic algorithm: probability that a gene mutates."),
    KeySpec("optimizer", "ga_weight_cpu", "GA_WEIGHT_CPU", _WEIGHT, 0.5,
            "Genetic algorithm fitness: weight of the CPU score."),
    KeySpec("optimizer", "ga_weight_memory", "GA_WEIGHT_MEMORY", _WEIGHT, 0.3,
            "Genetic algorithm fitness: weight of the memory score."),
    KeySpec("optimizer", "ga_weight_balance", "GA_WEIGHT_BALANCE", _WEIGHT, 0.2,
            "Genetic algorithm fitness: weight of the balance score (not all three GA weights may be 0)."),
    KeySpec("optimizer", "ga_seed", "GA_SEED", Int(0, optional=True), None,
            "Genetic algorithm RNG seed for reproducible runs; unset seeds from the OS.",
            example="42"),
    KeySpec("optimizer", "ga_time_budget_s", "GA_TIME_BUDGET", _SECONDS, 2.0,
            "Genetic algorithm: wall-clock budget; the best plan so far is used when it runs out."),
    # -- metrics -----------------------------------------------------------------------------
    KeySpec("metrics", "enabled", "ENABLE_METRICS", Bool(), True,
            "Serve Prometheus metrics at /metrics on METRICS_PORT."),
    KeySpec("metrics", "port", "METRICS_PORT", _PORT, 9090,
            "TCP port of the metrics server (must differ from PORT)."),
    # -- monitor -----------------------------------------------------------------------------
    KeySpec("monitor", "api_url", "MONITOR_API_URL",
            Text(pattern=r"https?://[^\s/?#]+[^\s]*",
                 description="an http:// or https:// URL", problem="is not a valid URL",
                 allow_empty=True, name="URL, or empty"),
            "http://thanos-querier:9091",
            "Prometheus or Thanos base URL queried for live usage; empty disables polling."),
    KeySpec("monitor", "api_version", "MONITOR_API_VERSION",
            Text(pattern=r"[A-Za-z0-9._-]+", description="an API version such as v1",
                 problem="is not a valid API version", name="string"),
            "v1",
            "Query path is MONITOR_API_URL + /api/ + this + /query."),
    KeySpec("monitor", "request_timeout_s", "MONITOR_REQUEST_TIMEOUT", _SECONDS, 5.0,
            "Time one Prometheus query may take."),
    KeySpec("monitor", "metrics_window_min", "MONITOR_METRICS_WINDOW", Int(1), 5,
            "Rate window in minutes, substituted for {window} in the queries (5 becomes 5m)."),
    KeySpec("monitor", "poll_interval_s", "MONITOR_POLL_INTERVAL", _SECONDS, 15.0,
            "Time between two polls of the monitoring API."),
    KeySpec("monitor", "cpu_query", "MONITOR_CPU_QUERY", _TEXT,
            '1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[{window}]))',
            "PromQL giving 0-1 CPU utilisation per node; {window} is replaced literally."),
    KeySpec("monitor", "memory_query", "MONITOR_MEMORY_QUERY", _TEXT,
            "1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes",
            "PromQL giving 0-1 memory utilisation per node."),
    KeySpec("monitor", "dedup", "MONITOR_DEDUP", Choice(("auto", "true", "false")), "auto",
            "Thanos Query dedup parameter: auto sends none (the server's default), true/false send it."),
    KeySpec("monitor", "partial_response", "MONITOR_PARTIAL_RESPONSE", Choice(("auto", "true", "false")), "auto",
            "Thanos Query partial_response parameter: auto sends none, true/false send it."),
    # -- load --------------------------------------------------------------------------------
    KeySpec("load", "cpu_threshold", "LOAD_CPU_THRESHOLD", _WEIGHT, 0.85,
            "CPU utilisation above which filter fails a node (edge-sched.io/cpu-threshold overrides)."),
    KeySpec("load", "memory_threshold", "LOAD_MEMORY_THRESHOLD", _WEIGHT, 0.85,
            "Memory utilisation above which filter fails a node (edge-sched.io/memory-threshold overrides)."),
    KeySpec("load", "stale_policy", "LOAD_STALE_POLICY", Choice(("open", "closed")), "open",
            "Whether a node with unknown or stale usage passes the load filter (open) or fails it (closed)."),
    KeySpec("load", "hotspot_damping", "LOAD_HOTSPOT_DAMPING", Bool(), True,
            "Add requests of pods placed in the last MONITOR_METRICS_WINDOW to measured usage until it shows them."),
    # -- computing_power ---------------------------------------------------------------------
    KeySpec("computing_power", "enabled", "ENABLE_COMPUTING_POWER", Bool(), True,
            "Computing-power quantification; off if this or COMPUTING_POWER_ENABLED is false."),
    KeySpec("computing_power", "enabled", "COMPUTING_POWER_ENABLED", Bool(), True,
            "Second name of the computing-power switch (seed's section name); either false disables.",
            in_toml=False),
    KeySpec("computing_power", "filter_enabled", "ENABLE_COMPUTING_POWER_FILTER", Bool(), True,
            "Fail nodes whose fresh reports show less available power than the pod needs."),
    KeySpec("computing_power", "cleanup_interval_s", "COMPUTING_POWER_CLEANUP_INTERVAL", _SECONDS, 300.0,
            "Time between sweeps that remove expired power reports."),
    KeySpec("computing_power", "expiry_s", "COMPUTING_POWER_EXPIRY_TIME", _SECONDS, 600.0,
            "Age after which a node's power report is ignored."),
    KeySpec("computing_power", "weight_cpu_power", "WEIGHT_CPU_POWER", _WEIGHT, 0.5,
            "Weight of available CPU power in the node score."),
    KeySpec("computing_power", "weight_gpu_power", "WEIGHT_GPU_POWER", _WEIGHT, 0.3,
            "Weight of available GPU power in the node score."),
    KeySpec("computing_power", "weight_fpga_power", "WEIGHT_FPGA_POWER", _WEIGHT, 0.2,
            "Weight of available FPGA power in the node score (not all three power weights may be 0)."),
    KeySpec("computing_power", "default_cpu_power_ratio", "DEFAULT_CPU_POWER_RATIO", _RATIO_POSITIVE, 0.8,
            "Fallback demand: efficiency applied to requested cores x 2.0 GHz."),
    KeySpec("computing_power", "default_gpu_tflops", "DEFAULT_GPU_TFLOPS", _RATIO_POSITIVE, 5.0,
            "Fallback demand: TFLOPS assumed per requested GPU."),
    KeySpec("computing_power", "default_fpga_tflops", "DEFAULT_FPGA_TFLOPS", _RATIO_POSITIVE, 2.0,
            "Fallback demand: TFLOPS assumed per requested FPGA."),
    KeySpec("computing_power", "fallback", "COMPUTING_POWER_FALLBACK",
            Choice(("default", "conservative", "aggressive")), "default",
            "Fallback demand multiplier: default 1, conservative 1.5, aggressive 2."),
    # -- udp ---------------------------------------------------------------------------------
    KeySpec("udp", "host", "UDP_SERVICE_HOST", _HOST, "0.0.0.0",
            "Address the UDP computing-power report listener binds."),
    KeySpec("udp", "port", "UDP_SERVICE_PORT", _PORT, 8001,
            "UDP port of the report listener (spec S3 fixes 8001; the seed's 8889 is not used)."),
    KeySpec("udp", "buffer_size", "UDP_BUFFER_SIZE", Int(64, 65507), 4096,
            "Largest report datagram in bytes; larger ones are rejected as truncated."),
    KeySpec("udp", "report_timeout_s", "UDP_REPORT_TIMEOUT", _SECONDS, 5.0,
            "Time to wait for a computing-power report."),
    KeySpec("udp", "allowed_sources", "UDP_ALLOWED_SOURCES", CidrList(), (),
            "Networks allowed to send reports (comma-separated CIDRs); empty allows all."),
    # -- router ------------------------------------------------------------------------------
    KeySpec("router", "enabled", "COMPUTING_ROUTER_ENABLED", Bool(), True,
            "Ask the computing-power router for pod demand; false always uses the fallback estimate."),
    KeySpec("router", "host", "COMPUTING_ROUTER_HOST", _HOST, "127.0.0.1",
            "Host of the computing-power router (UDP)."),
    KeySpec("router", "port", "COMPUTING_ROUTER_PORT", _PORT, 8888,
            "UDP port of the computing-power router."),
    KeySpec("router", "timeout_s", "UDP_TIMEOUT", _SECONDS, 5.0,
            "Time one router request try waits for the answer."),
    KeySpec("router", "max_retries", "UDP_MAX_RETRIES", Int(1), 3,
            "Router request tries in total (1 means no retry)."),
    KeySpec("router", "retry_delay_s", "UDP_RETRY_DELAY", _SECONDS_OR_ZERO, 1.0,
            "Delay before the first retry of a router request."),
    KeySpec("router", "exponential_backoff", "UDP_EXPONENTIAL_BACKOFF", Bool(), True,
            "Double the retry delay after each failed try."),
    # -- resource_status ---------------------------------------------------------------------
    KeySpec("resource_status", "enabled", "RESOURCE_STATUS_ENABLED", Bool(), True,
            "Serve the resource-status WebSocket and its health endpoint (false: 404)."),
    KeySpec("resource_status", "update_interval_s", "RESOURCE_STATUS_UPDATE_INTERVAL", _SECONDS, 5.0,
            "Time between status broadcasts to WebSocket clients."),
    KeySpec("resource_status", "cleanup_interval_s", "RESOURCE_STATUS_CLEANUP_INTERVAL", _SECONDS, 60.0,
            "Time between sweeps of dead WebSocket connections."),
    KeySpec("resource_status", "max_connections", "RESOURCE_STATUS_MAX_CONNECTIONS", Int(1), 100,
            "Most concurrent WebSocket clients; the next is refused (close code 1013)."),
    KeySpec("resource_status", "broadcast_timeout_s", "RESOURCE_STATUS_BROADCAST_TIMEOUT", _SECONDS, 5.0,
            "A client that cannot take a broadcast within this time is disconnected."),
    # -- task_planning -----------------------------------------------------------------------
    KeySpec("task_planning", "enabled", "TASK_PLANNING_ENABLED", Bool(), True,
            "Serve the joint task-planning API."),
    KeySpec("task_planning", "max_tasks", "TASK_PLANNING_MAX_TASKS", Int(1), 100,
            "Most tasks in one plan."),
    KeySpec("task_planning", "default_namespace", "TASK_PLANNING_DEFAULT_NAMESPACE", _DNS_LABEL, "default",
            "Namespace of tasks that do not name one."),
    KeySpec("task_planning", "deploy_timeout_s", "TASK_PLANNING_DEPLOY_TIMEOUT", _SECONDS, 300.0,
            "Time one task gets to complete (job) or become available (service)."),
    KeySpec("task_planning", "retry_count", "TASK_PLANNING_RETRY_COUNT", Int(0), 3,
            "Retries of a failed or timed-out task before the plan fails."),
    KeySpec("task_planning", "retry_interval_s", "TASK_PLANNING_RETRY_INTERVAL", _SECONDS_OR_ZERO, 5.0,
            "Delay between retries of a task."),
)
# fmt: on

SECTION_NAMES: Final[tuple[str, ...]] = tuple(dict.fromkeys(spec.section for spec in KEYS))
"""Section names in table order (the order of `Settings` attributes and of printed output)."""

KEYS_BY_ENV: Final[Mapping[str, KeySpec]] = types.MappingProxyType({spec.env: spec for spec in KEYS})
"""ENV name -> key."""

TOML_KEYS: Final[Mapping[tuple[str, str], KeySpec]] = types.MappingProxyType(
    {(spec.section, spec.field): spec for spec in KEYS if spec.in_toml}
)
"""(section, field) -> the key a TOML file sets (for a two-name switch, its first ENV name)."""


def _table_problems(keys: tuple[KeySpec, ...]) -> list[str]:
    """Inconsistencies that would make the table lie; checked once at import."""
    problems: list[str] = []
    seen_env: set[str] = set()
    seen_sections: list[str] = []
    for spec in keys:
        if spec.env in seen_env:
            problems.append(f"{spec.env}: ENV name used twice")
        seen_env.add(spec.env)
        if spec.section not in seen_sections:
            seen_sections.append(spec.section)
        elif seen_sections[-1] != spec.section:
            problems.append(f"{spec.label}: section rows must be contiguous")
        try:
            spec.kind.check(spec.default)
        except Invalid as exc:
            problems.append(f"{spec.label}: default {spec.default!r} {exc.problem}")
        if spec.default is None and spec.example is None:
            problems.append(f"{spec.label}: unset by default, so the example file needs an example value")
        siblings = [s for s in keys if (s.section, s.field) == (spec.section, spec.field)]
        # Several ENV names may share a field only as switches that must all be on.
        if len(siblings) > 1 and not all(isinstance(s.kind, Bool) for s in siblings):
            problems.append(f"{spec.label}: only booleans may have several ENV names")
        if sum(s.in_toml for s in siblings) != 1:
            problems.append(f"{spec.label}: exactly one ENV name of a field must be its TOML key")
    return problems


def _check_table(keys: tuple[KeySpec, ...]) -> None:
    problems = _table_problems(keys)
    if problems:  # pragma: no cover - a broken table must not import
        raise RuntimeError("configuration key table is inconsistent: " + "; ".join(problems))


_check_table(KEYS)
