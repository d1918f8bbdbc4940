"""Configuration of edge-sched: the frozen settings tree and the loader that fills it (spec S3).

This module owns what the daemon can be configured with and how: every key with its ENV name,
TOML name, type, default and rule (`KEYS`), the frozen attrs tree handed to services (`Settings`,
one section class per subsystem), the loader that merges defaults < TOML file < `.env` file <
process environment (`load_settings`), and the renderings for operators (`render_settings` for
`edge-sched config`, `render_example_toml` for `config.toml.example`). Start-up stops on the first
bad value with a one-line `ConfigError` naming the key, its source and what is expected, because a
scheduler that runs on a misread setting misplaces pods silently.

The implementation lives in `edge_sched.config`; this module is the stable import path.

Typical use:

    loaded = load_settings(args.config)          # raises ConfigError
    cfg = loaded.settings
    port = await nursery.start(run_udp_listener, cfg.udp, tx)
"""

from __future__ import annotations

from edge_sched.config._keys import KEYS, KEYS_BY_ENV, SECTION_NAMES, TOML_KEYS, KeySpec
from edge_sched.config._kinds import ConfigError, IPNetwork
from edge_sched.config._loader import (
    APP_DOTENV_PATH,
    CONFIG_ENV_VAR,
    DEFAULT_CONFIG_NAME,
    LoadedSettings,
    load_settings,
    parse_dotenv,
)
from edge_sched.config._model import (
    FALLBACK_MULTIPLIERS,
    SECTION_TYPES,
    AppSettings,
    ComputingPowerSettings,
    FallbackStrategy,
    KubeSettings,
    LoadSettings,
    LogFormat,
    LogLevel,
    MetricsSettings,
    MonitorSettings,
    OptimizerAlgorithm,
    OptimizerSettings,
    ResourceStatusSettings,
    RouterSettings,
    SchedulerSettings,
    ServerSettings,
    Settings,
    StalePolicy,
    TaskPlanningSettings,
    UdpSettings,
)
from edge_sched.config._render import render_docs_table, render_example_toml, render_settings

__all__ = [
    "APP_DOTENV_PATH",
    "CONFIG_ENV_VAR",
    "DEFAULT_CONFIG_NAME",
    "FALLBACK_MULTIPLIERS",
    "KEYS",
    "KEYS_BY_ENV",
    "SECTION_NAMES",
    "SECTION_TYPES",
    "TOML_KEYS",
    "AppSettings",
    "ComputingPowerSettings",
    "ConfigError",
    "FallbackStrategy",
    "IPNetwork",
    "KeySpec",
    "KubeSettings",
    "LoadSettings",
    "LoadedSettings",
    "LogFormat",
    "LogLevel",
    "MetricsSettings",
    "MonitorSettings",
    "OptimizerAlgorithm",
    "OptimizerSettings",
    "ResourceStatusSettings",
    "RouterSettings",
    "SchedulerSettings",
    "ServerSettings",
    "Settings",
    "StalePolicy",
    "TaskPlanningSettings",
    "UdpSettings",
    "load_settings",
    "parse_dotenv",
    "render_docs_table",
    "render_example_toml",
    "render_settings",
]
