"""The settings tree: one frozen attrs class per subsystem, gathered under `Settings`.

Services receive only their own section (`run_udp_listener(cfg.udp, ...)`), so a section is the
unit of dependency. Every attribute takes its default and its validator from the key table
(`_keys.KEYS`), so a directly built or evolved section (`attrs.evolve(cfg.server, port=p)` in a
test) is checked by the same rules as a loaded one. Cross-field rules (TLS pairs, weights that may
not all be 0, port clashes) need the sources for their message and are enforced by the loader.
"""

from __future__ import annotations

import ipaddress
import types
from pathlib import Path  # noqa: TC003 - field types stay resolvable (attrs.resolve_types, cattrs)
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from edge_sched.config._keys import TOML_KEYS
from edge_sched.config._kinds import ConfigError, Invalid, IPNetwork, show_value

if TYPE_CHECKING:
    from collections.abc import Mapping

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LogFormat = Literal["text", "json"]
OptimizerAlgorithm = Literal["default", "genetic"]
StalePolicy = Literal["open", "closed"]
FallbackStrategy = Literal["default", "conservative", "aggressive"]

FALLBACK_MULTIPLIERS: Final[Mapping[str, float]] = types.MappingProxyType(
    {"default": 1.0, "conservative": 1.5, "aggressive": 2.0}
)
"""Multiplier on the estimated computing-power demand per COMPUTING_POWER_FALLBACK (spec S6.4)."""


def _key(section: str, field: str) -> Any:  # noqa: ANN401 - stands for an attrs field, like attrs.field
    """An attrs field whose default and validator come from the key table row."""
    spec = TOML_KEYS[(section, field)]

    def validate(_instance: object, _attribute: attrs.Attribute[Any], value: object) -> None:
        try:
            spec.kind.check(value)
        except Invalid as exc:
            shown = "'***'" if spec.secret else show_value(value)
            raise ConfigError(
                f"{spec.label}: {shown} {exc.problem}; expected {spec.kind.expected}", key=spec.env
            ) from None

    def mask(value: object) -> str:
        return "None" if value is None else "'***'"

    # Secrets must not leak through repr() into logs or tracebacks.
    return attrs.field(default=spec.default, validator=validate, repr=mask if spec.secret else True)


@attrs.frozen(kw_only=True)
class AppSettings:
    """Identity and logging."""

    name: str = _key("app", "name")
    version: str = _key("app", "version")
    debug: bool = _key("app", "debug")
    log_level: LogLevel = _key("app", "log_level")
    log_format: LogFormat = _key("app", "log_format")


@attrs.frozen(kw_only=True)
class ServerSettings:
    """The HTTP server: extender API, task-planning API, WebSocket feed."""

    host: str = _key("server", "host")
    port: int = _key("server", "port")
    api_v1_prefix: str = _key("server", "api_v1_prefix")
    max_request_bytes: int = _key("server", "max_request_bytes")
    tls_cert_file: Path | None = _key("server", "tls_cert_file")
    tls_key_file: Path | None = _key("server", "tls_key_file")
    tls_client_ca_file: Path | None = _key("server", "tls_client_ca_file")
    auth_token: str | None = _key("server", "auth_token")
    shutdown_grace_s: float = _key("server", "shutdown_grace_s")

    @property
    def api_root(self) -> str:
        """Root of every API route: `/api` + API_V1_PREFIX, i.e. `/api/v1` (spec S3)."""
        return "/api" + self.api_v1_prefix

    @property
    def tls_enabled(self) -> bool:
        """True when HTTPS is configured (the loader guarantees cert and key come together)."""
        return self.tls_cert_file is not None and self.tls_key_file is not None


@attrs.frozen(kw_only=True)
class KubeSettings:
    """Access to the Kubernetes API and the watch cache."""

    use_service_account: bool = _key("kube", "use_service_account")
    namespace: str = _key("kube", "namespace")
    kubeconfig: str | None = _key("kube", "kubeconfig")
    scheduler_name: str = _key("kube", "scheduler_name")
    request_timeout_s: float = _key("kube", "request_timeout_s")
    watch_backoff_max_s: float = _key("kube", "watch_backoff_max_s")
    assumed_pod_ttl_s: float = _key("kube", "assumed_pod_ttl_s")


@attrs.frozen(kw_only=True)
class SchedulerSettings:
    """Extender verbs: filter/prioritize deadline, pod limit, plans followed by bind."""

    filter_timeout_s: float = _key("scheduler", "filter_timeout_s")
    max_pods_per_node: int = _key("scheduler", "max_pods_per_node")
    enable_gpu_scheduling: bool = _key("scheduler", "enable_gpu_scheduling")
    plan_expiration_s: float = _key("scheduler", "plan_expiration_s")
    bind_follow_plan: bool = _key("scheduler", "bind_follow_plan")


@attrs.frozen(kw_only=True)
class OptimizerSettings:
    """Node scoring weights and the batch optimizer (greedy or genetic)."""

    enabled: bool = _key("optimizer", "enabled")
    weight_cpu: float = _key("optimizer", "weight_cpu")
    weight_memory: float = _key("optimizer", "weight_memory")
    algorithm: OptimizerAlgorithm = _key("optimizer", "algorithm")
    ga_population_size: int = _key("optimizer", "ga_population_size")
    ga_generations: int = _key("optimizer", "ga_generations")
    ga_mutation_rate: float = _key("optimizer", "ga_mutation_rate")
    ga_weight_cpu: float = _key("optimizer", "ga_weight_cpu")
    ga_weight_memory: float = _key("optimizer", "ga_weight_memory")
    ga_weight_balance: float = _key("optimizer", "ga_weight_balance")
    ga_seed: int | None = _key("optimizer", "ga_seed")
    ga_time_budget_s: float = _key("optimizer", "ga_time_budget_s")


@attrs.frozen(kw_only=True)
class MetricsSettings:
    """The Prometheus metrics endpoint."""

    enabled: bool = _key("metrics", "enabled")
    port: int = _key("metrics", "port")


@attrs.frozen(kw_only=True)
class MonitorSettings:
    """The Prometheus/Thanos poller that provides live node usage."""

    api_url: str = _key("monitor", "api_url")
    api_version: str = _key("monitor", "api_version")
    request_timeout_s: float = _key("monitor", "request_timeout_s")
    metrics_window_min: int = _key("monitor", "metrics_window_min")
    poll_interval_s: float = _key("monitor", "poll_interval_s")
    cpu_query: str = _key("monitor", "cpu_query")
    memory_query: str = _key("monitor", "memory_query")
    dedup: str = _key("monitor", "dedup")
    partial_response: str = _key("monitor", "partial_response")

    @property
    def polling_enabled(self) -> bool:
        """False when MONITOR_API_URL is empty."""
        return bool(self.api_url)

    @property
    def query_url(self) -> str:
        """`MONITOR_API_URL` + `/api/` + `MONITOR_API_VERSION` + `/query` (spec S7)."""
        return f"{self.api_url.rstrip('/')}/api/{self.api_version}/query"

    @property
    def window(self) -> str:
        """The PromQL range for `{window}`: MONITOR_METRICS_WINDOW minutes, e.g. `5m`."""
        return f"{self.metrics_window_min}m"


@attrs.frozen(kw_only=True)
class LoadSettings:
    """Load filter thresholds (filter rule 4) and what to do without fresh usage."""

    cpu_threshold: float = _key("load", "cpu_threshold")
    memory_threshold: float = _key("load", "memory_threshold")
    stale_policy: StalePolicy = _key("load", "stale_policy")
    hotspot_damping: bool = _key("load", "hotspot_damping")


@attrs.frozen(kw_only=True)
class ComputingPowerSettings:
    """Computing-power reports, their expiry, power weights and the fallback demand estimate.

    `enabled` is the combined switch: false when ENABLE_COMPUTING_POWER or COMPUTING_POWER_ENABLED
    is false (spec S3).
    """

    enabled: bool = _key("computing_power", "enabled")
    filter_enabled: bool = _key("computing_power", "filter_enabled")
    cleanup_interval_s: float = _key("computing_power", "cleanup_interval_s")
    expiry_s: float = _key("computing_power", "expiry_s")
    weight_cpu_power: float = _key("computing_power", "weight_cpu_power")
    weight_gpu_power: float = _key("computing_power", "weight_gpu_power")
    weight_fpga_power: float = _key("computing_power", "weight_fpga_power")
    default_cpu_power_ratio: float = _key("computing_power", "default_cpu_power_ratio")
    default_gpu_tflops: float = _key("computing_power", "default_gpu_tflops")
    default_fpga_tflops: float = _key("computing_power", "default_fpga_tflops")
    fallback: FallbackStrategy = _key("computing_power", "fallback")

    @property
    def fallback_multiplier(self) -> float:
        """1.0, 1.5 or 2.0 for default, conservative, aggressive (spec S6.4)."""
        return FALLBACK_MULTIPLIERS[self.fallback]


@attrs.frozen(kw_only=True)
class UdpSettings:
    """The UDP listener for node computing-power reports."""

    host: str = _key("udp", "host")
    port: int = _key("udp", "port")
    buffer_size: int = _key("udp", "buffer_size")
    report_timeout_s: float = _key("udp", "report_timeout_s")
    allowed_sources: tuple[IPNetwork, ...] = _key("udp", "allowed_sources")

    def allows(self, address: str) -> bool:
        """Whether a datagram from `address` may be processed (no allowlist allows all).

        IPv4-mapped IPv6 senders (`::ffff:10.0.0.7`, seen on dual-stack sockets) are matched as IPv4.
        """
        if not self.allowed_sources:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.allowed_sources)


@attrs.frozen(kw_only=True)
class RouterSettings:
    """The UDP client of the computing-power router."""

    enabled: bool = _key("router", "enabled")
    host: str = _key("router", "host")
    port: int = _key("router", "port")
    timeout_s: float = _key("router", "timeout_s")
    max_retries: int = _key("router", "max_retries")
    retry_delay_s: float = _key("router", "retry_delay_s")
    exponential_backoff: bool = _key("router", "exponential_backoff")


@attrs.frozen(kw_only=True)
class ResourceStatusSettings:
    """The resource-status WebSocket feed."""

    enabled: bool = _key("resource_status", "enabled")
    update_interval_s: float = _key("resource_status", "update_interval_s")
    cleanup_interval_s: float = _key("resource_status", "cleanup_interval_s")
    max_connections: int = _key("resource_status", "max_connections")
    broadcast_timeout_s: float = _key("resource_status", "broadcast_timeout_s")


@attrs.frozen(kw_only=True)
class TaskPlanningSettings:
    """Joint task plans: size limit, namespace, deployment deadline and retries."""

    enabled: bool = _key("task_planning", "enabled")
    max_tasks: int = _key("task_planning", "max_tasks")
    default_namespace: str = _key("task_planning", "default_namespace")
    deploy_timeout_s: float = _key("task_planning", "deploy_timeout_s")
    retry_count: int = _key("task_planning", "retry_count")
    retry_interval_s: float = _key("task_planning", "retry_interval_s")


@attrs.frozen(kw_only=True)
class Settings:
    """The whole configuration; `Settings()` is the built-in defaults."""

    app: AppSettings = attrs.Factory(AppSettings)
    server: ServerSettings = attrs.Factory(ServerSettings)
    kube: KubeSettings = attrs.Factory(KubeSettings)
    scheduler: SchedulerSettings = attrs.Factory(SchedulerSettings)
    optimizer: OptimizerSettings = attrs.Factory(OptimizerSettings)
    metrics: MetricsSettings = attrs.Factory(MetricsSettings)
    monitor: MonitorSettings = attrs.Factory(MonitorSettings)
    load: LoadSettings = attrs.Factory(LoadSettings)
    computing_power: ComputingPowerSettings = attrs.Factory(ComputingPowerSettings)
    udp: UdpSettings = attrs.Factory(UdpSettings)
    router: RouterSettings = attrs.Factory(RouterSettings)
    resource_status: ResourceStatusSettings = attrs.Factory(ResourceStatusSettings)
    task_planning: TaskPlanningSettings = attrs.Factory(TaskPlanningSettings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Defaults overlaid with `environ` only: no TOML or `.env` file is read.

        For tests and embedding; the daemon uses `load_settings`, which also reads the files.

        Raises:
            ConfigError: a value does not parse, is out of range, or a cross-field rule fails.
        """
        # Imported here because the loader builds instances of this module's classes.
        from edge_sched.config._loader import settings_from_environ

        return settings_from_environ(environ)


SECTION_TYPES: Final[Mapping[str, type[Any]]] = types.MappingProxyType(
    {
        "app": AppSettings,
        "server": ServerSettings,
        "kube": KubeSettings,
        "scheduler": SchedulerSettings,
        "optimizer": OptimizerSettings,
        "metrics": MetricsSettings,
        "monitor": MonitorSettings,
        "load": LoadSettings,
        "computing_power": ComputingPowerSettings,
        "udp": UdpSettings,
        "router": RouterSettings,
        "resource_status": ResourceStatusSettings,
        "task_planning": TaskPlanningSettings,
    }
)
"""Section name -> section class, in `Settings` attribute order."""
