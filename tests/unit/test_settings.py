"""Configuration (spec S3): sources and precedence, every seed variable, every error path, renderings.

Each test loads from a private sandbox: an explicit `environ`, a temporary working directory, and
`.env` candidates inside it (a temporary stand-in for `/app/.env`), so the real environment and
filesystem never leak in.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import TYPE_CHECKING

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge_sched.settings import (
    APP_DOTENV_PATH,
    KEYS,
    KEYS_BY_ENV,
    SECTION_NAMES,
    SECTION_TYPES,
    ComputingPowerSettings,
    ConfigError,
    LoadedSettings,
    MonitorSettings,
    ServerSettings,
    Settings,
    UdpSettings,
    load_settings,
    parse_dotenv,
    render_docs_table,
    render_example_toml,
    render_settings,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

REPO = Path(__file__).resolve().parents[2]
DOCS_BEGIN = "<!-- BEGIN GENERATED KEY TABLE -->"
DOCS_END = "<!-- END GENERATED KEY TABLE -->"


@attrs.frozen
class Sandbox:
    """A working directory plus a stand-in for `/app/.env`."""

    cwd: Path
    app_dotenv: Path

    def write(self, name: str, text: str) -> Path:
        path = self.cwd / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def load(
        self, environ: Mapping[str, str] | None = None, config_path: str | None = None
    ) -> LoadedSettings:
        return load_settings(
            config_path,
            {} if environ is None else environ,
            self.cwd,
            dotenv_paths=(self.cwd / ".env", self.app_dotenv),
        )

    def error(self, environ: Mapping[str, str] | None = None, config_path: str | None = None) -> str:
        with pytest.raises(ConfigError) as info:
            self.load(environ, config_path)
        message = str(info.value)
        assert "\n" not in message
        return message


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    cwd = tmp_path / "work"
    cwd.mkdir()
    (tmp_path / "app").mkdir()
    return Sandbox(cwd, tmp_path / "app" / ".env")


def attr(settings: Settings, dotted: str) -> object:
    section, field = dotted.split(".")
    return getattr(getattr(settings, section), field)


# -- defaults and the table ------------------------------------------------------------------


def test_no_sources_gives_the_defaults(sandbox: Sandbox) -> None:
    loaded = sandbox.load()
    assert loaded.settings == Settings()
    assert loaded.sources == {spec.env: "default" for spec in KEYS}
    assert loaded.config_file is None
    assert loaded.dotenv_file is None
    assert loaded.warnings == ()


def test_section_classes_mirror_the_key_table() -> None:
    assert [field.name for field in attrs.fields(Settings)] == list(SECTION_NAMES)
    assert list(SECTION_TYPES) == list(SECTION_NAMES)
    for section, cls in SECTION_TYPES.items():
        table = {spec.field: spec for spec in KEYS if spec.section == section and spec.in_toml}
        fields = {field.name: field for field in attrs.fields(cls)}
        assert list(fields) == list(table), section
        for name, field in fields.items():
            assert field.default == table[name].default, f"{section}.{name}"


def test_section_field_types_resolve_at_runtime() -> None:
    # Serialisers (cattrs) and attrs.resolve_types need the annotations to name importable types.
    attrs.resolve_types(Settings)
    for cls in SECTION_TYPES.values():
        attrs.resolve_types(cls)


def test_env_names_are_unique_and_only_the_power_switch_has_two() -> None:
    assert len(KEYS_BY_ENV) == len(KEYS)
    fields = [(spec.section, spec.field) for spec in KEYS]
    shared = {field for field in fields if fields.count(field) > 1}
    assert shared == {("computing_power", "enabled")}


def test_settings_are_frozen_and_sections_validate_on_construction() -> None:
    settings = Settings()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        settings.server.port = 1  # type: ignore[misc]
    assert attrs.evolve(settings.server, port=18000).port == 18000
    with pytest.raises(ConfigError, match=r"^PORT \(server\.port\): 0 is not a valid port; expected an integer 1-65535$"):
        ServerSettings(port=0)
    with pytest.raises(ConfigError, match=r"WEIGHT_CPU \(optimizer\.weight_cpu\)"):
        attrs.evolve(settings.optimizer, weight_cpu=2.0)


def test_derived_properties() -> None:
    settings = Settings()
    assert settings.server.api_root == "/api/v1"
    assert attrs.evolve(settings.server, api_v1_prefix="/v2").api_root == "/api/v2"
    assert not settings.server.tls_enabled
    assert settings.monitor.polling_enabled
    assert settings.monitor.query_url == "http://thanos-querier:9091/api/v1/query"
    assert settings.monitor.window == "5m"
    assert not MonitorSettings(api_url="").polling_enabled


@pytest.mark.parametrize(
    ("fallback", "multiplier"), [("default", 1.0), ("conservative", 1.5), ("aggressive", 2.0)]
)
def test_fallback_multiplier(fallback: str, multiplier: float) -> None:
    assert ComputingPowerSettings(fallback=fallback).fallback_multiplier == multiplier  # type: ignore[arg-type]


def test_secret_is_masked_in_repr() -> None:
    server = ServerSettings(auth_token="s3cr3t-token")
    assert "s3cr3t" not in repr(server)
    assert "auth_token='***'" in repr(server)


# -- precedence ------------------------------------------------------------------------------


def test_precedence_default_toml_dotenv_env(sandbox: Sandbox) -> None:
    config = sandbox.write("config.toml", '[server]\nport = 8101\nhost = "10.0.0.1"\n')
    dotenv = sandbox.write(".env", "PORT=8102\nAPI_V1_PREFIX=/v9\n")

    sandbox.write(".env", "")
    step1 = sandbox.load()
    assert step1.settings.server.port == 8101
    assert step1.sources["PORT"] == f"toml:{config}"
    assert step1.sources["METRICS_PORT"] == "default"

    sandbox.write(".env", "PORT=8102\nAPI_V1_PREFIX=/v9\n")
    step2 = sandbox.load()
    assert step2.settings.server.port == 8102
    assert step2.sources["PORT"] == f".env:{dotenv}"
    assert step2.sources["HOST"] == f"toml:{config}"

    step3 = sandbox.load({"PORT": "8103"})
    assert step3.settings.server.port == 8103
    assert step3.sources["PORT"] == "env"
    assert step3.settings.server.host == "10.0.0.1"
    assert step3.settings.server.api_v1_prefix == "/v9"
    assert step3.sources["API_V1_PREFIX"] == f".env:{dotenv}"
    assert step3.config_file == config
    assert step3.dotenv_file == dotenv


def test_values_in_overridden_sources_are_still_checked(sandbox: Sandbox) -> None:
    config = sandbox.write("config.toml", "[server]\nport = 0\n")
    message = sandbox.error({"PORT": "8000"})
    assert message == (
        f"PORT (server.port) from toml:{config}: 0 is not a valid port; expected an integer 1-65535"
    )


def test_environ_none_reads_os_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for spec in KEYS:
        monkeypatch.delenv(spec.env, raising=False)
    monkeypatch.setenv("PORT", "8123")
    monkeypatch.chdir(tmp_path)
    loaded = load_settings(dotenv_paths=())
    assert loaded.settings.server.port == 8123
    assert loaded.sources["PORT"] == "env"


def test_unknown_environment_variables_are_ignored(sandbox: Sandbox) -> None:
    loaded = sandbox.load({"PROT": "1", "PATH": "/usr/bin", "EDGE_SCHED_UNKNOWN": "x"})
    assert loaded.settings == Settings()


def test_from_env_reads_no_files(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    sandbox.write("config.toml", "[server]\nport = 8101\n")
    monkeypatch.chdir(sandbox.cwd)
    settings = Settings.from_env({"METRICS_PORT": "9191"})
    assert settings.server.port == 8000
    assert settings.metrics.port == 9191
    with pytest.raises(ConfigError, match=r"^METRICS_PORT \(metrics\.port\) from env: 'x' "):
        Settings.from_env({"METRICS_PORT": "x"})


# -- finding the TOML file -------------------------------------------------------------------


def test_explicit_config_beats_env_var_and_cwd_file(sandbox: Sandbox) -> None:
    sandbox.write("config.toml", "[server]\nport = 8101\n")
    from_var = sandbox.write("var.toml", "[server]\nport = 8102\n")
    explicit = sandbox.write("etc/explicit.toml", "[server]\nport = 8103\n")
    env = {"EDGE_SCHED_CONFIG": str(from_var)}

    loaded = sandbox.load(env, config_path="etc/explicit.toml")  # relative to cwd
    assert loaded.settings.server.port == 8103
    assert loaded.config_file == explicit
    assert loaded.sources["PORT"] == f"toml:{explicit}"

    assert sandbox.load(env).settings.server.port == 8102
    assert sandbox.load(env).config_file == from_var


def test_cwd_config_toml_is_found(sandbox: Sandbox) -> None:
    config = sandbox.write("config.toml", "[server]\nport = 8101\n")
    loaded = sandbox.load()
    assert loaded.config_file == config
    assert loaded.settings.server.port == 8101


def test_empty_edge_sched_config_means_unset(sandbox: Sandbox) -> None:
    sandbox.write("config.toml", "[server]\nport = 8101\n")
    assert sandbox.load({"EDGE_SCHED_CONFIG": ""}).settings.server.port == 8101


def test_missing_config_files_are_errors(sandbox: Sandbox) -> None:
    missing = sandbox.cwd / "nope.toml"
    assert sandbox.error(config_path="nope.toml") == (
        f"--config: {missing} does not exist; expected a path to a readable TOML file"
    )
    assert sandbox.error({"EDGE_SCHED_CONFIG": str(missing)}) == (
        f"EDGE_SCHED_CONFIG from env: {missing} does not exist; expected a path to a readable TOML file"
    )


# -- finding the .env file -------------------------------------------------------------------


def test_app_dotenv_is_the_fallback(sandbox: Sandbox) -> None:
    sandbox.app_dotenv.write_text("PORT=8201\n", encoding="utf-8")
    loaded = sandbox.load()
    assert loaded.settings.server.port == 8201
    assert loaded.sources["PORT"] == f".env:{sandbox.app_dotenv}"
    assert loaded.dotenv_file == sandbox.app_dotenv


def test_cwd_dotenv_shadows_app_dotenv_entirely(sandbox: Sandbox) -> None:
    sandbox.app_dotenv.write_text("PORT=8201\nMETRICS_PORT=9201\n", encoding="utf-8")
    local = sandbox.write(".env", "PORT=8202\n")
    loaded = sandbox.load()
    assert loaded.dotenv_file == local
    assert loaded.settings.server.port == 8202
    assert loaded.settings.metrics.port == 9090  # the files are alternatives, not merged


def test_default_dotenv_candidates_start_in_cwd(sandbox: Sandbox) -> None:
    assert Path("/app/.env") == APP_DOTENV_PATH
    local = sandbox.write(".env", "PORT=8202\n")
    loaded = load_settings(None, {}, sandbox.cwd)
    assert loaded.dotenv_file == local
    assert loaded.settings.server.port == 8202


@pytest.mark.parametrize(
    ("line", "value"),
    [
        ("APP_NAME=plain", "plain"),
        ("export APP_NAME=exported", "exported"),
        ("  APP_NAME = spaced  ", "spaced"),
        ("APP_NAME='single # not a comment'", "single # not a comment"),
        ('APP_NAME="double \\"escaped\\" \\\\ ok"', 'double "escaped" \\ ok'),
        ('APP_NAME="quoted" # comment', "quoted"),
        ("APP_NAME=value # trailing comment", "value"),
        ("APP_NAME=a#b", "a#b"),
        ("APP_NAME=#b", "#b"),
        ("MONITOR_CPU_QUERY='up{job=\"node\"}'", 'up{job="node"}'),
    ],
)
def test_dotenv_syntax(sandbox: Sandbox, line: str, value: str) -> None:
    sandbox.write(".env", f"# comment\n\n{line}\n")
    loaded = sandbox.load()
    spec = KEYS_BY_ENV[line.split("=", 1)[0].replace("export", "").strip()]
    assert attr(loaded.settings, spec.toml_name) == value


def test_parse_dotenv_keeps_order_and_line_numbers() -> None:
    text = "A=1\n\n# c\nexport B='two'\nA=3\nC= # only a comment\nD=\n"
    assert parse_dotenv(text, origin=".env:x") == [
        (1, "A", "1"), (4, "B", "two"), (5, "A", "3"), (6, "C", ""), (7, "D", ""),
    ]


def test_dotenv_last_assignment_wins(sandbox: Sandbox) -> None:
    sandbox.write(".env", "PORT=8301\nPORT=8302\n")
    assert sandbox.load().settings.server.port == 8302


def test_dotenv_unknown_keys_are_ignored_with_a_warning(sandbox: Sandbox) -> None:
    dotenv = sandbox.write(".env", "PROT=1\nEDGE_SCHED_CONFIG=/x.toml\nOTHER_APP=1\n")
    loaded = sandbox.load()
    assert loaded.settings == Settings()
    assert loaded.warnings == (
        f".env:{dotenv} line 1: unknown key PROT ignored (did you mean PORT?)",
        f".env:{dotenv} line 2: EDGE_SCHED_CONFIG is read from the process environment only; ignored",
        f".env:{dotenv} line 3: unknown key OTHER_APP ignored",
    )


def test_dotenv_syntax_errors_name_file_and_line(sandbox: Sandbox) -> None:
    dotenv = sandbox.write(".env", "PORT=8000\nPORT: 8001\n")
    assert sandbox.error() == (
        f".env:{dotenv} line 2: 'PORT: 8001' is not a KEY=VALUE line; "
        "expected KEY=VALUE, optionally prefixed by 'export '"
    )
    sandbox.write(".env", 'APP_NAME="open\n')
    assert sandbox.error() == (
        f"APP_NAME from .env:{dotenv} line 1: the \" quote is not closed; "
        "expected a value on one line, quotes closed on the same line"
    )


def test_dotenv_value_errors_name_the_line(sandbox: Sandbox) -> None:
    dotenv = sandbox.write(".env", "# ports\nPORT=http\n")
    assert sandbox.error() == (
        f"PORT (server.port) from .env:{dotenv} line 2: 'http' is not a valid port; "
        "expected an integer 1-65535"
    )


# -- every seed variable, by exact name, with the seed default --------------------------------

# (ENV name, seed default as written in the guide, attribute, typed default, other value, typed)
SEED_VARIABLES: list[tuple[str, str, str, object, str, object]] = [
    ("USE_SERVICE_ACCOUNT", "true", "kube.use_service_account", True, "false", False),
    ("KUBE_NAMESPACE", "edge-scheduler", "kube.namespace", "edge-scheduler", "edge-system", "edge-system"),
    ("APP_NAME", "edge-scheduler", "app.name", "edge-scheduler", "sched-b", "sched-b"),
    ("APP_VERSION", "1.0.0", "app.version", "1.0.0", "2.1.0", "2.1.0"),
    ("DEBUG", "false", "app.debug", False, "true", True),
    ("LOG_LEVEL", "INFO", "app.log_level", "INFO", "warning", "WARNING"),
    ("API_V1_PREFIX", "/v1", "server.api_v1_prefix", "/v1", "/v2", "/v2"),
    ("HOST", "0.0.0.0", "server.host", "0.0.0.0", "127.0.0.1", "127.0.0.1"),
    ("PORT", "8000", "server.port", 8000, "8080", 8080),
    ("SCHEDULER_FILTER_TIMEOUT", "5", "scheduler.filter_timeout_s", 5.0, "2.5", 2.5),
    ("MAX_PODS_PER_NODE", "110", "scheduler.max_pods_per_node", 110, "250", 250),
    ("ENABLE_GPU_SCHEDULING", "false", "scheduler.enable_gpu_scheduling", False, "true", True),
    ("ENABLE_METRICS", "true", "metrics.enabled", True, "false", False),
    ("METRICS_PORT", "9090", "metrics.port", 9090, "9100", 9100),
    ("MONITOR_API_URL", "http://thanos-querier:9091", "monitor.api_url",
     "http://thanos-querier:9091", "https://prom.example:9090", "https://prom.example:9090"),
    ("MONITOR_API_VERSION", "v1", "monitor.api_version", "v1", "v2", "v2"),
    ("MONITOR_REQUEST_TIMEOUT", "5", "monitor.request_timeout_s", 5.0, "1.5", 1.5),
    ("MONITOR_METRICS_WINDOW", "5", "monitor.metrics_window_min", 5, "10", 10),
    ("ENABLE_OPTIMIZER", "true", "optimizer.enabled", True, "false", False),
    ("WEIGHT_CPU", "0.6", "optimizer.weight_cpu", 0.6, "0.7", 0.7),
    ("WEIGHT_MEMORY", "0.4", "optimizer.weight_memory", 0.4, "0.3", 0.3),
    ("OPTIMIZER_ALGORITHM", "default", "optimizer.algorithm", "default", "genetic", "genetic"),
    ("GA_POPULATION_SIZE", "50", "optimizer.ga_population_size", 50, "80", 80),
    ("GA_GENERATIONS", "100", "optimizer.ga_generations", 100, "20", 20),
    ("GA_MUTATION_RATE", "0.1", "optimizer.ga_mutation_rate", 0.1, "0.05", 0.05),
    ("GA_WEIGHT_CPU", "0.5", "optimizer.ga_weight_cpu", 0.5, "0.4", 0.4),
    ("GA_WEIGHT_MEMORY", "0.3", "optimizer.ga_weight_memory", 0.3, "0.4", 0.4),
    ("GA_WEIGHT_BALANCE", "0.2", "optimizer.ga_weight_balance", 0.2, "0.1", 0.1),
    ("ENABLE_COMPUTING_POWER", "true", "computing_power.enabled", True, "false", False),
    ("ENABLE_COMPUTING_POWER_FILTER", "true", "computing_power.filter_enabled", True, "false", False),
    ("COMPUTING_ROUTER_HOST", "127.0.0.1", "router.host", "127.0.0.1", "10.0.0.5", "10.0.0.5"),
    ("COMPUTING_ROUTER_PORT", "8888", "router.port", 8888, "9999", 9999),
    # The seed's main table says 8889; its computing-power section and spec S3 say 8001.
    ("UDP_SERVICE_PORT", "8001", "udp.port", 8001, "8889", 8889),
    ("UDP_TIMEOUT", "5", "router.timeout_s", 5.0, "2", 2.0),
    ("UDP_MAX_RETRIES", "3", "router.max_retries", 3, "5", 5),
    ("UDP_RETRY_DELAY", "1.0", "router.retry_delay_s", 1.0, "0.5", 0.5),
    ("UDP_EXPONENTIAL_BACKOFF", "true", "router.exponential_backoff", True, "false", False),
    ("WEIGHT_CPU_POWER", "0.5", "computing_power.weight_cpu_power", 0.5, "0.6", 0.6),
    ("WEIGHT_GPU_POWER", "0.3", "computing_power.weight_gpu_power", 0.3, "0.2", 0.2),
    ("WEIGHT_FPGA_POWER", "0.2", "computing_power.weight_fpga_power", 0.2, "0.1", 0.1),
    ("DEFAULT_CPU_POWER_RATIO", "0.8", "computing_power.default_cpu_power_ratio", 0.8, "0.9", 0.9),
    ("DEFAULT_GPU_TFLOPS", "5.0", "computing_power.default_gpu_tflops", 5.0, "7.5", 7.5),
    ("DEFAULT_FPGA_TFLOPS", "2.0", "computing_power.default_fpga_tflops", 2.0, "3", 3.0),
    ("COMPUTING_POWER_FALLBACK", "default", "computing_power.fallback", "default", "aggressive", "aggressive"),
    ("TASK_PLANNING_ENABLED", "true", "task_planning.enabled", True, "false", False),
    ("TASK_PLANNING_MAX_TASKS", "100", "task_planning.max_tasks", 100, "20", 20),
    ("TASK_PLANNING_DEFAULT_NAMESPACE", "default", "task_planning.default_namespace", "default", "jobs", "jobs"),
    ("TASK_PLANNING_DEPLOY_TIMEOUT", "300", "task_planning.deploy_timeout_s", 300.0, "60", 60.0),
    ("TASK_PLANNING_RETRY_COUNT", "3", "task_planning.retry_count", 3, "0", 0),
    ("TASK_PLANNING_RETRY_INTERVAL", "5", "task_planning.retry_interval_s", 5.0, "10", 10.0),
    # The seed's computing-power section.
    ("COMPUTING_POWER_ENABLED", "true", "computing_power.enabled", True, "false", False),
    ("UDP_SERVICE_HOST", "0.0.0.0", "udp.host", "0.0.0.0", "127.0.0.1", "127.0.0.1"),
    ("UDP_BUFFER_SIZE", "4096", "udp.buffer_size", 4096, "8192", 8192),
    ("UDP_REPORT_TIMEOUT", "5.0", "udp.report_timeout_s", 5.0, "2.0", 2.0),
    ("COMPUTING_POWER_CLEANUP_INTERVAL", "300", "computing_power.cleanup_interval_s", 300.0, "60", 60.0),
    ("COMPUTING_POWER_EXPIRY_TIME", "600", "computing_power.expiry_s", 600.0, "120", 120.0),
    # The seed's resource-status section.
    ("RESOURCE_STATUS_ENABLED", "true", "resource_status.enabled", True, "false", False),
    ("RESOURCE_STATUS_UPDATE_INTERVAL", "5", "resource_status.update_interval_s", 5.0, "1", 1.0),
    ("RESOURCE_STATUS_CLEANUP_INTERVAL", "60", "resource_status.cleanup_interval_s", 60.0, "30", 30.0),
    ("RESOURCE_STATUS_MAX_CONNECTIONS", "100", "resource_status.max_connections", 100, "10", 10),
    ("RESOURCE_STATUS_BROADCAST_TIMEOUT", "5", "resource_status.broadcast_timeout_s", 5.0, "2", 2.0),
]

# Keys the spec adds beyond the seed (documented in config.toml.example, spec S3).
ADDED_BY_SPEC = {
    "LOG_FORMAT", "MAX_REQUEST_BYTES", "TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CLIENT_CA_FILE",
    "API_AUTH_TOKEN", "SHUTDOWN_GRACE_PERIOD", "KUBECONFIG", "SCHEDULER_NAME", "KUBE_REQUEST_TIMEOUT",
    "KUBE_WATCH_BACKOFF_MAX", "ASSUMED_POD_TTL", "PLAN_EXPIRATION_TIME", "BIND_FOLLOW_PLAN", "GA_SEED",
    "GA_TIME_BUDGET", "MONITOR_POLL_INTERVAL", "MONITOR_CPU_QUERY", "MONITOR_MEMORY_QUERY",
    "LOAD_CPU_THRESHOLD", "LOAD_MEMORY_THRESHOLD", "LOAD_STALE_POLICY", "UDP_ALLOWED_SOURCES",
    "COMPUTING_ROUTER_ENABLED", "MONITOR_DEDUP", "MONITOR_PARTIAL_RESPONSE", "LOAD_HOTSPOT_DAMPING",
}


def test_every_key_is_a_seed_variable_or_a_documented_addition() -> None:
    seed = {row[0] for row in SEED_VARIABLES}
    assert len(seed) == len(SEED_VARIABLES)
    assert not seed & ADDED_BY_SPEC
    assert seed | ADDED_BY_SPEC == set(KEYS_BY_ENV)


@pytest.mark.parametrize(
    ("name", "seed_default", "dotted", "default", "other", "other_value"),
    SEED_VARIABLES,
    ids=[row[0] for row in SEED_VARIABLES],
)
def test_seed_variable_by_exact_name_with_seed_default(
    sandbox: Sandbox,
    name: str,
    seed_default: str,
    dotted: str,
    default: object,
    other: str,
    other_value: object,
) -> None:
    unset = sandbox.load()
    assert attr(unset.settings, dotted) == default
    assert unset.sources[name] == "default"

    as_seed = sandbox.load({name: seed_default})
    assert as_seed.settings == unset.settings
    assert as_seed.sources[name] == "env"

    changed = sandbox.load({name: other})
    assert attr(changed.settings, dotted) == other_value
    assert changed.sources[name] == "env"


# -- value syntax ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        *[(word, True) for word in ("true", "TRUE", "True", "1", "yes", "YES", "Yes", "on", "ON", " true ")],
        *[(word, False) for word in ("false", "FALSE", "False", "0", "no", "NO", "No", "off", "OFF")],
    ],
)
def test_boolean_spellings(sandbox: Sandbox, text: str, value: bool) -> None:
    assert sandbox.load({"DEBUG": text}).settings.app.debug is value
    sandbox.write(".env", f"ENABLE_METRICS={text}\n")
    assert sandbox.load().settings.metrics.enabled is value


@pytest.mark.parametrize(
    ("enable", "enabled", "effective"),
    [
        (None, None, True),
        ("true", "true", True),
        ("false", None, False),
        (None, "false", False),
        ("true", "false", False),
        ("false", "true", False),
        ("0", "no", False),
    ],
)
def test_both_computing_power_switch_names(
    sandbox: Sandbox, enable: str | None, enabled: str | None, effective: bool
) -> None:
    environ = {}
    if enable is not None:
        environ["ENABLE_COMPUTING_POWER"] = enable
    if enabled is not None:
        environ["COMPUTING_POWER_ENABLED"] = enabled
    loaded = sandbox.load(environ)
    assert loaded.settings.computing_power.enabled is effective
    assert loaded.sources["ENABLE_COMPUTING_POWER"] == ("env" if enable else "default")
    assert loaded.sources["COMPUTING_POWER_ENABLED"] == ("env" if enabled else "default")


def test_toml_computing_power_switch_is_enable_computing_power(sandbox: Sandbox) -> None:
    config = sandbox.write("config.toml", "[computing_power]\nenabled = false\n")
    loaded = sandbox.load()
    assert loaded.settings.computing_power.enabled is False
    assert loaded.sources["ENABLE_COMPUTING_POWER"] == f"toml:{config}"
    assert loaded.sources["COMPUTING_POWER_ENABLED"] == "default"
    # The environment overrides the file's spelling of the same name...
    assert sandbox.load({"ENABLE_COMPUTING_POWER": "true"}).settings.computing_power.enabled
    # ...but the other name is a separate switch that cannot turn it back on.
    assert not sandbox.load({"COMPUTING_POWER_ENABLED": "true"}).settings.computing_power.enabled


def test_toml_native_values_and_strings_that_parse(sandbox: Sandbox) -> None:
    sandbox.write(
        "config.toml",
        """
[app]
debug = "yes"
log_level = "debug"
[server]
port = "8101"
shutdown_grace_s = 3
[optimizer]
weight_cpu = 1
algorithm = "GENETIC"
ga_seed = 7
[udp]
allowed_sources = ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]
""",
    )
    settings = sandbox.load().settings
    assert settings.app.debug is True
    assert settings.app.log_level == "DEBUG"
    assert settings.server.port == 8101
    assert settings.server.shutdown_grace_s == 3.0
    assert isinstance(settings.server.shutdown_grace_s, float)
    assert settings.optimizer.weight_cpu == 1.0
    assert settings.optimizer.algorithm == "genetic"
    assert settings.optimizer.ga_seed == 7
    assert settings.udp.allowed_sources == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.168.1.7/32"),
        ipaddress.ip_network("2001:db8::/32"),
    )


def test_cidr_list_from_env_and_allowlist(sandbox: Sandbox) -> None:
    udp = sandbox.load({"UDP_ALLOWED_SOURCES": " 10.1.2.3/8 , 192.168.1.7,"}).settings.udp
    assert udp.allowed_sources == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("192.168.1.7/32"))
    assert udp.allows("10.200.0.1")
    assert udp.allows("::ffff:10.0.0.9")
    assert not udp.allows("192.168.1.8")
    assert not udp.allows("not-an-ip")
    assert UdpSettings().allows("203.0.113.1")  # empty allowlist allows all


def test_empty_optional_values_mean_unset_and_override_lower_sources(sandbox: Sandbox) -> None:
    sandbox.write(
        "config.toml",
        '[server]\ntls_cert_file = "/tls/c.crt"\ntls_key_file = "/tls/c.key"\n[optimizer]\nga_seed = 3\n',
    )
    from_file = sandbox.load().settings
    assert from_file.server.tls_cert_file == Path("/tls/c.crt")
    assert from_file.server.tls_enabled
    assert from_file.optimizer.ga_seed == 3

    cleared = sandbox.load({"TLS_CERT_FILE": "", "TLS_KEY_FILE": " ", "GA_SEED": ""})
    assert cleared.settings.server.tls_cert_file is None
    assert cleared.settings.server.tls_key_file is None
    assert cleared.settings.optimizer.ga_seed is None
    assert cleared.sources["TLS_CERT_FILE"] == "env"


def test_monitor_url_may_be_empty_to_disable_polling(sandbox: Sandbox) -> None:
    monitor = sandbox.load({"MONITOR_API_URL": ""}).settings.monitor
    assert monitor.api_url == ""
    assert not monitor.polling_enabled


def test_full_tls_configuration_is_accepted(sandbox: Sandbox) -> None:
    server = sandbox.load(
        {"TLS_CERT_FILE": "/t/c.crt", "TLS_KEY_FILE": "/t/c.key", "TLS_CLIENT_CA_FILE": "/t/ca.crt"}
    ).settings.server
    assert server.tls_enabled
    assert server.tls_client_ca_file == Path("/t/ca.crt")


@given(st.floats(min_value=0.0, max_value=1.0))
def test_weights_round_trip_through_text(weight: float) -> None:
    spec = KEYS_BY_ENV["WEIGHT_CPU"]
    assert spec.kind.parse(spec.kind.render(weight)) == weight


# -- error paths -----------------------------------------------------------------------------

ENV_ERRORS: list[tuple[dict[str, str], str]] = [
    ({"PORT": "abc"},
     "PORT (server.port) from env: 'abc' is not a valid port; expected an integer 1-65535"),
    ({"PORT": "0"},
     "PORT (server.port) from env: '0' is not a valid port; expected an integer 1-65535"),
    ({"METRICS_PORT": "70000"},
     "METRICS_PORT (metrics.port) from env: '70000' is not a valid port; expected an integer 1-65535"),
    ({"UDP_SERVICE_PORT": "8001.5"},
     "UDP_SERVICE_PORT (udp.port) from env: '8001.5' is not a valid port; expected an integer 1-65535"),
    ({"MAX_PODS_PER_NODE": "many"},
     "MAX_PODS_PER_NODE (scheduler.max_pods_per_node) from env: 'many' is not an integer; "
     "expected an integer >= 1"),
    ({"MAX_REQUEST_BYTES": "512"},
     "MAX_REQUEST_BYTES (server.max_request_bytes) from env: '512' is out of range; expected an integer >= 1024"),
    ({"UDP_BUFFER_SIZE": "65508"},
     "UDP_BUFFER_SIZE (udp.buffer_size) from env: '65508' is out of range; expected an integer 64-65507"),
    ({"SCHEDULER_FILTER_TIMEOUT": "fast"},
     "SCHEDULER_FILTER_TIMEOUT (scheduler.filter_timeout_s) from env: 'fast' is not a number; "
     "expected a number > 0 (seconds)"),
    ({"MONITOR_REQUEST_TIMEOUT": "nan"},
     "MONITOR_REQUEST_TIMEOUT (monitor.request_timeout_s) from env: 'nan' is not a finite number; "
     "expected a number > 0 (seconds)"),
    ({"DEBUG": "maybe"},
     "DEBUG (app.debug) from env: 'maybe' is not a boolean; "
     "expected a boolean: true/false, 1/0, yes/no or on/off (any case)"),
    ({"WEIGHT_CPU": "1.5"},
     "WEIGHT_CPU (optimizer.weight_cpu) from env: '1.5' is out of range; expected a number 0-1"),
    ({"WEIGHT_GPU_POWER": "-0.1"},
     "WEIGHT_GPU_POWER (computing_power.weight_gpu_power) from env: '-0.1' is out of range; "
     "expected a number 0-1"),
    ({"UDP_TIMEOUT": "-1"},
     "UDP_TIMEOUT (router.timeout_s) from env: '-1' is out of range; expected a number > 0 (seconds)"),
    ({"UDP_RETRY_DELAY": "-0.5"},
     "UDP_RETRY_DELAY (router.retry_delay_s) from env: '-0.5' is out of range; expected a number >= 0 (seconds)"),
    ({"KUBE_REQUEST_TIMEOUT": "0"},
     "KUBE_REQUEST_TIMEOUT (kube.request_timeout_s) from env: '0' is out of range; "
     "expected a number > 0 (seconds)"),
    ({"SHUTDOWN_GRACE_PERIOD": "61"},
     "SHUTDOWN_GRACE_PERIOD (server.shutdown_grace_s) from env: '61' is out of range; "
     "expected a number 0-60 (seconds)"),
    ({"LOG_LEVEL": "verbose"},
     "LOG_LEVEL (app.log_level) from env: 'verbose' is not a valid choice; "
     "expected one of DEBUG, INFO, WARNING, ERROR (any case)"),
    ({"COMPUTING_POWER_FALLBACK": "reckless"},
     "COMPUTING_POWER_FALLBACK (computing_power.fallback) from env: 'reckless' is not a valid choice; "
     "expected one of default, conservative, aggressive (any case)"),
    ({"UDP_ALLOWED_SOURCES": "10.0.0.0/8,10.0.0.0/33"},
     "UDP_ALLOWED_SOURCES (udp.allowed_sources) from env: '10.0.0.0/33' is not a valid CIDR; expected a "
     "comma-separated list of CIDRs or addresses (e.g. 10.0.0.0/8,192.168.1.7), or empty for all"),
    ({"API_V1_PREFIX": "/v1/"},
     "API_V1_PREFIX (server.api_v1_prefix) from env: '/v1/' is not a valid API prefix; expected a path "
     "that starts with '/' and does not end with '/' (e.g. /v1)"),
    ({"TASK_PLANNING_DEFAULT_NAMESPACE": "My_NS"},
     "TASK_PLANNING_DEFAULT_NAMESPACE (task_planning.default_namespace) from env: 'My_NS' is not a valid "
     "DNS label; expected a DNS label (lowercase letters, digits and '-', at most 63 characters)"),
    ({"MONITOR_API_URL": "thanos:9091"},
     "MONITOR_API_URL (monitor.api_url) from env: 'thanos:9091' is not a valid URL; "
     "expected an http:// or https:// URL, or empty"),
    ({"APP_NAME": "  "},
     "APP_NAME (app.name) from env: '  ' is empty; expected a non-empty string"),
    ({"GA_SEED": "-1"},
     "GA_SEED (optimizer.ga_seed) from env: '-1' is out of range; expected an integer >= 0, or empty for unset"),
    ({"GA_POPULATION_SIZE": "1"},
     "GA_POPULATION_SIZE (optimizer.ga_population_size) from env: '1' is out of range; expected an integer 2-1000"),
    ({"GA_POPULATION_SIZE": "99999999999999999999999"},
     "GA_POPULATION_SIZE (optimizer.ga_population_size) from env: '99999999999999999999999' is out of range; "
     "expected an integer 2-1000"),
    ({"GA_GENERATIONS": "100001"},
     "GA_GENERATIONS (optimizer.ga_generations) from env: '100001' is out of range; expected an integer 1-100000"),
    ({"COMPUTING_POWER_ENABLED": "enabled"},
     "COMPUTING_POWER_ENABLED (computing_power.enabled) from env: 'enabled' is not a boolean; "
     "expected a boolean: true/false, 1/0, yes/no or on/off (any case)"),
    # Cross-field rules.
    ({"TLS_CERT_FILE": "/t/c.crt"},
     "TLS_KEY_FILE (server.tls_key_file) from default: not set while TLS_CERT_FILE is set (from env); "
     "expected TLS_CERT_FILE and TLS_KEY_FILE both set or both unset"),
    ({"TLS_KEY_FILE": "/t/c.key"},
     "TLS_CERT_FILE (server.tls_cert_file) from default: not set while TLS_KEY_FILE is set (from env); "
     "expected TLS_CERT_FILE and TLS_KEY_FILE both set or both unset"),
    ({"TLS_CLIENT_CA_FILE": "/t/ca.crt"},
     "TLS_CLIENT_CA_FILE (server.tls_client_ca_file) from env: '/t/ca.crt' is set without a server "
     "certificate; expected TLS_CERT_FILE and TLS_KEY_FILE to be set too (client certificates need TLS)"),
    ({"WEIGHT_CPU": "0", "WEIGHT_MEMORY": "0.0"},
     "WEIGHT_CPU (optimizer.weight_cpu) from env and WEIGHT_MEMORY (optimizer.weight_memory) from env: "
     "both are 0; expected at least one of WEIGHT_CPU, WEIGHT_MEMORY > 0"),
    ({"GA_WEIGHT_CPU": "0", "GA_WEIGHT_MEMORY": "0", "GA_WEIGHT_BALANCE": "0"},
     "GA_WEIGHT_CPU (optimizer.ga_weight_cpu) from env and GA_WEIGHT_MEMORY (optimizer.ga_weight_memory) "
     "from env and GA_WEIGHT_BALANCE (optimizer.ga_weight_balance) from env: all are 0; "
     "expected at least one of GA_WEIGHT_CPU, GA_WEIGHT_MEMORY, GA_WEIGHT_BALANCE > 0"),
    ({"METRICS_PORT": "8000"},
     "METRICS_PORT (metrics.port) from env: 8000 is also PORT (from default); "
     "expected a port different from PORT while ENABLE_METRICS is true"),
]


@pytest.mark.parametrize(("environ", "message"), ENV_ERRORS, ids=[m.split(" ")[0] for _, m in ENV_ERRORS])
def test_env_errors_name_key_source_and_expectation(
    sandbox: Sandbox, environ: dict[str, str], message: str
) -> None:
    assert sandbox.error(environ) == message


def test_metrics_port_may_equal_port_when_metrics_are_off(sandbox: Sandbox) -> None:
    loaded = sandbox.load({"METRICS_PORT": "8000", "ENABLE_METRICS": "false"})
    assert loaded.settings.metrics.port == 8000


def test_secret_values_are_not_echoed_in_errors(sandbox: Sandbox) -> None:
    message = sandbox.error({"API_AUTH_TOKEN": "top secret"})
    assert message == (
        "API_AUTH_TOKEN (server.auth_token) from env: '***' contains characters not allowed in an "
        "HTTP header; expected visible ASCII characters without spaces, or empty for unset"
    )
    sandbox.write(".env", "API_AUTH_TOKEN: hunter2\n")
    assert "hunter2" not in sandbox.error()


def test_config_error_carries_key_and_source(sandbox: Sandbox) -> None:
    with pytest.raises(ConfigError) as info:
        sandbox.load({"PORT": "x"})
    assert (info.value.key, info.value.source) == ("PORT", "env")
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("[server]\nprot = 8000\n",
         "{label}: unknown key server.prot (did you mean server.port?); expected one of the [server] keys "
         "host, port, api_v1_prefix, max_request_bytes, tls_cert_file, tls_key_file, tls_client_ca_file, "
         "auth_token, shutdown_grace_s"),
        ("[servr]\nport = 8000\n",
         "{label}: unknown section [servr] (did you mean [server]?); expected keys inside the sections "
         + ", ".join(f"[{name}]" for name in SECTION_NAMES)),
        ("port = 8000\n",
         "{label}: unknown top-level key 'port' (did you mean server.port?); expected keys inside the "
         "sections " + ", ".join(f"[{name}]" for name in SECTION_NAMES)),
        ("server = 8000\n",
         "{label}: server is not a table; expected a [server] table with the keys host, port, "
         "api_v1_prefix, max_request_bytes, tls_cert_file, tls_key_file, tls_client_ca_file, auth_token, "
         "shutdown_grace_s"),
        ("[server.tls]\ncert = 'x'\n",
         "{label}: unknown key server.tls; expected one of the [server] keys host, port, api_v1_prefix, "
         "max_request_bytes, tls_cert_file, tls_key_file, tls_client_ca_file, auth_token, shutdown_grace_s"),
        ("[server]\nport = \n",
         "{label}: invalid TOML: Invalid value (at line 2, column 8); expected a valid TOML document"),
        ("[server]\nport = 0\n",
         "PORT (server.port) from {label}: 0 is not a valid port; expected an integer 1-65535"),
        ("[server]\nport = 8000.0\n",
         "PORT (server.port) from {label}: 8000.0 is not a valid port; expected an integer 1-65535"),
        ("[server]\nport = true\n",
         "PORT (server.port) from {label}: true is not a valid port; expected an integer 1-65535"),
        ("[app]\ndebug = 1\n",
         "DEBUG (app.debug) from {label}: 1 is not a boolean; "
         "expected a boolean: true/false, 1/0, yes/no or on/off (any case)"),
        ("[app]\nversion = 1.0\n",
         "APP_VERSION (app.version) from {label}: 1.0 is not a string; expected a non-empty string"),
        ("[optimizer]\nweight_memory = 1.01\n",
         "WEIGHT_MEMORY (optimizer.weight_memory) from {label}: 1.01 is out of range; expected a number 0-1"),
        ("[udp]\nallowed_sources = ['10.0.0.0/8', 'localhost']\n",
         "UDP_ALLOWED_SOURCES (udp.allowed_sources) from {label}: 'localhost' is not a valid CIDR; expected a "
         "comma-separated list of CIDRs or addresses (e.g. 10.0.0.0/8,192.168.1.7), or empty for all"),
        ("[server]\ntls_key_file = '/k'\n",
         "TLS_CERT_FILE (server.tls_cert_file) from default: not set while TLS_KEY_FILE is set "
         "(from {label}); expected TLS_CERT_FILE and TLS_KEY_FILE both set or both unset"),
    ],
    ids=[
        "unknown-key", "unknown-section", "top-level-key", "section-not-table", "nested-table",
        "syntax", "port-0", "port-float", "port-bool", "bool-int", "text-float", "weight", "cidr", "tls-half",
    ],
)
def test_toml_errors_name_the_file(sandbox: Sandbox, toml: str, message: str) -> None:
    path = sandbox.write("config.toml", toml)
    assert sandbox.error() == message.format(label=f"toml:{path}")


def test_toml_file_that_is_not_utf8(sandbox: Sandbox) -> None:
    path = sandbox.cwd / "config.toml"
    path.write_bytes(b"[app]\nname = '\xff'\n")
    assert sandbox.error() == f"toml:{path}: not UTF-8 (bad byte at offset 14); expected a UTF-8 TOML file"


def test_unreadable_config_is_an_error(sandbox: Sandbox) -> None:
    (sandbox.cwd / "config.toml").mkdir()
    message = sandbox.error()
    assert message.startswith(f"toml:{sandbox.cwd / 'config.toml'}: cannot read the file (")
    assert message.endswith("); expected a readable TOML file")


# -- renderings ------------------------------------------------------------------------------


def test_render_settings_lists_every_key_grouped_by_section(sandbox: Sandbox) -> None:
    text = render_settings(sandbox.load(), show_sources=False)
    assert text.endswith("\n")
    headers = [line for line in text.splitlines() if line.startswith("# [")]
    assert headers == [f"# [{name}]" for name in SECTION_NAMES]
    names = [line.split("=")[0] for line in text.splitlines() if line and not line.startswith("#")]
    assert names == [spec.env for spec in KEYS]
    assert "PORT=8000\n" in text
    assert "TLS_CERT_FILE=\n" in text
    assert "# from" not in text


def test_render_settings_masks_secrets_and_shows_sources(sandbox: Sandbox) -> None:
    dotenv = sandbox.write(".env", "API_AUTH_TOKEN=s3cr3t-token\n")
    loaded = sandbox.load({"PORT": "8111"})
    text = render_settings(loaded, show_sources=True)
    assert "s3cr3t" not in text
    assert f"API_AUTH_TOKEN=***  # from .env:{dotenv}\n" in text
    assert "PORT=8111  # from env\n" in text
    assert "METRICS_PORT=9090  # from default\n" in text
    assert "s3cr3t" not in repr(loaded)
    dotenv.unlink()
    assert "API_AUTH_TOKEN=  # from default" in render_settings(sandbox.load(), show_sources=True)


def test_render_settings_shows_both_power_switches(sandbox: Sandbox) -> None:
    text = render_settings(sandbox.load({"COMPUTING_POWER_ENABLED": "off"}), show_sources=True)
    assert "ENABLE_COMPUTING_POWER=true  # from default\n" in text
    assert "COMPUTING_POWER_ENABLED=false  # from env\n" in text
    assert "# => computing_power.enabled=false " in text


def test_render_settings_output_loads_back_as_dotenv(sandbox: Sandbox) -> None:
    original = sandbox.load(
        {
            "APP_NAME": "a # b",
            "MONITOR_CPU_QUERY": 'max by (node) (x{a="b"}[{window}])',
            "UDP_ALLOWED_SOURCES": "10.0.0.0/8,fd00::/8",
            "GA_SEED": "11",
            "TLS_CERT_FILE": "/t/c.crt",
            "TLS_KEY_FILE": "/t/c.key",
            "COMPUTING_POWER_ENABLED": "false",
            "LOG_LEVEL": "error",
        }
    )
    sandbox.write(".env", render_settings(original, show_sources=True))
    reloaded = sandbox.load()
    assert reloaded.settings == original.settings
    assert reloaded.values == original.values


def test_config_toml_example_is_in_sync_with_the_table() -> None:
    committed = (REPO / "config.toml.example").read_text(encoding="utf-8")
    assert committed == render_example_toml(), (
        "config.toml.example is stale: python -m edge_sched.config example-toml > config.toml.example"
    )
    for spec in KEYS:
        assert f"# {spec.env} (" in committed, spec.env
        assert spec.doc in committed, spec.env


def test_config_toml_example_loads_to_the_defaults(sandbox: Sandbox) -> None:
    example = REPO / "config.toml.example"
    loaded = sandbox.load(config_path=str(example))
    assert loaded.settings == Settings()
    unset_by_default = {spec.env for spec in KEYS if spec.default is None or not spec.in_toml}
    for spec in KEYS:
        expected = "default" if spec.env in unset_by_default else f"toml:{example}"
        assert loaded.sources[spec.env] == expected, spec.env


def test_config_toml_example_examples_are_valid(sandbox: Sandbox) -> None:
    uncommented = "\n".join(
        line[2:] if line.startswith("# ") and " = " in line and not line.startswith("# [") else line
        for line in render_example_toml().splitlines()
    )
    path = sandbox.write("example.toml", uncommented)
    settings = sandbox.load(config_path=str(path)).settings
    assert settings.server.auth_token is not None
    assert settings.server.tls_client_ca_file is not None
    assert settings.optimizer.ga_seed == 42


def test_docs_key_table_is_in_sync() -> None:
    docs = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    start = docs.index(DOCS_BEGIN) + len(DOCS_BEGIN)
    end = docs.index(DOCS_END)
    assert docs[start:end].strip("\n") == render_docs_table().strip("\n"), (
        "docs/configuration.md is stale: paste `python -m edge_sched.config docs-table` between the markers"
    )


def test_regeneration_command(capsys: pytest.CaptureFixture[str]) -> None:
    from edge_sched.config.__main__ import main

    assert main(["example-toml"]) == 0
    assert capsys.readouterr().out == render_example_toml()
    assert main(["bogus"]) == 2

