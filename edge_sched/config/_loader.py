"""Loading: find the configuration sources, merge them by precedence, validate, build `Settings`.

Precedence, lowest to highest (spec S3): built-in defaults < TOML file < `.env` file < process
environment. The TOML file is `--config PATH`, else `$EDGE_SCHED_CONFIG`, else `./config.toml` if
present; the `.env` file is `./.env`, else `/app/.env` (where the in-cluster ConfigMap is mounted).

Every value present in any source is parsed and checked, even one a higher source overrides, so a
bad value cannot hide in a file until the override is removed. Failures raise `ConfigError` with a
one-line message naming the key, the source and what is expected; the loader is the only place
that knows sources, so it also runs the cross-field checks. Nothing here is cached: each call reads
its inputs afresh, and the caller decides what to keep.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Final

import attrs

from edge_sched.config._keys import KEYS, KEYS_BY_ENV, SECTION_NAMES, TOML_KEYS, KeySpec
from edge_sched.config._kinds import ConfigError, Invalid, show_value
from edge_sched.config._model import SECTION_TYPES, Settings

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

CONFIG_ENV_VAR: Final = "EDGE_SCHED_CONFIG"
"""Names the TOML file when `--config` is not given; read from the process environment only."""

DEFAULT_CONFIG_NAME: Final = "config.toml"
"""TOML file looked for in the working directory when neither `--config` nor the variable is set."""

APP_DOTENV_PATH: Final = Path("/app/.env")
"""Where the in-cluster ConfigMap mounts its `.env`; used when the working directory has none."""

_DOTENV_ASSIGN: Final = re.compile(r"(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=(.*)", re.DOTALL)
_DOUBLE_QUOTE_ESCAPES: Final = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


@attrs.frozen
class LoadedSettings:
    """The result of `load_settings`.

    Attributes:
        settings: the effective configuration.
        sources: ENV name -> where its value came from: `default`, `toml:/path`, `.env:/path`
            or `env`. Both names of the computing-power switch are listed.
        values: ENV name -> the typed value that name resolved to. Equal to the settings attribute,
            except for a switch with two names, whose attribute is the AND of both.
        config_file: the TOML file read, if any.
        dotenv_file: the `.env` file read, if any.
        warnings: things worth logging that are not errors (unknown keys in the `.env` file).
    """

    settings: Settings
    sources: dict[str, str]
    values: dict[str, object] = attrs.field(factory=dict, repr=False)  # holds secrets in clear
    config_file: Path | None = None
    dotenv_file: Path | None = None
    warnings: tuple[str, ...] = ()


@attrs.frozen
class _Layer:
    """One source's raw values by ENV name (strings, or native TOML values)."""

    label: str
    values: Mapping[str, object]
    lines: Mapping[str, int] = attrs.Factory(dict)  # .env line of each key, for messages


def load_settings(
    config_path: str | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    *,
    dotenv_paths: Sequence[Path] | None = None,
) -> LoadedSettings:
    """Read every configuration source and build the effective settings.

    Args:
        config_path: the `--config` argument; relative paths are taken from `cwd`.
        environ: process environment; None means `os.environ`.
        cwd: directory for `./config.toml`, `./.env` and relative paths; None means the current one.
        dotenv_paths: `.env` candidates, the first existing one is read. None means
            `(cwd/.env, /app/.env)`; tests pass their own to stay away from the real `/app`.

    Returns:
        The settings, where each value came from, and the files read.

    Raises:
        ConfigError: a file is missing, unreadable or malformed; a TOML section or key is unknown;
            a value does not parse or is out of range; or a cross-field rule fails.
    """
    env: Mapping[str, str] = os.environ if environ is None else environ
    base = Path(os.path.abspath(Path.cwd() if cwd is None else cwd))
    layers: list[_Layer] = []
    warnings: list[str] = []

    config_file = _find_config(config_path, env, base)
    if config_file is not None:
        layers.append(_toml_layer(config_file))

    candidates = (
        (base / ".env", APP_DOTENV_PATH)
        if dotenv_paths is None
        else tuple(_absolute(base, str(path)) for path in dotenv_paths)
    )
    dotenv_file = next((path for path in candidates if path.exists()), None)
    if dotenv_file is not None:
        layer, notes = _dotenv_layer(dotenv_file)
        layers.append(layer)
        warnings.extend(notes)

    layers.append(_environ_layer(env))
    values, sources = _resolve(layers)
    return LoadedSettings(
        settings=_build(values),
        sources=sources,
        values=values,
        config_file=config_file,
        dotenv_file=dotenv_file,
        warnings=tuple(warnings),
    )


def settings_from_environ(environ: Mapping[str, str]) -> Settings:
    """Defaults overlaid with `environ` only (no files); backs `Settings.from_env`."""
    values, _ = _resolve([_environ_layer(environ)])
    return _build(values)


def parse_dotenv(text: str, *, origin: str) -> list[tuple[int, str, str]]:
    """Parse `.env` text into (line number, key, value) entries in file order.

    Accepted: `KEY=VALUE`, an optional `export ` prefix, blank lines, `#` comment lines, a ` #`
    comment after an unquoted value, and values in single quotes (literal) or double quotes
    (escapes `\\n \\t \\r \\" \\\\ \\$`). Values are one line; surrounding whitespace is dropped.

    Args:
        text: the file's content.
        origin: how messages name the file, e.g. `.env:/app/.env`.

    Raises:
        ConfigError: a line is not an assignment or a quote is not closed.
    """
    entries: list[tuple[int, str, str]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _DOTENV_ASSIGN.fullmatch(stripped)
        if match is None:
            secret = any(spec.secret and spec.env in stripped for spec in KEYS)
            shown = "'***'" if secret else show_value(stripped)
            raise ConfigError(
                f"{origin} line {lineno}: {shown} is not a KEY=VALUE line; "
                "expected KEY=VALUE, optionally prefixed by 'export '",
                source=origin,
            )
        key = match.group(1)
        try:
            value = _dotenv_value(match.group(2))
        except Invalid as exc:
            raise ConfigError(
                f"{key} from {origin} line {lineno}: {exc.problem}; "
                "expected a value on one line, quotes closed on the same line",
                key=key,
                source=origin,
            ) from None
        entries.append((lineno, key, value))
    return entries


def _dotenv_value(raw: str) -> str:
    """The value part of a `.env` assignment (everything after `=`), unquoted."""
    rest = raw.strip()
    if not rest or rest[0] not in "\"'":
        # Unquoted: as in a shell, "#" starts a comment only after whitespace, so `KEY= # note`
        # is empty while `KEY=a#b` and `KEY=#b` keep their "#".
        return re.split(r"\s#", raw, maxsplit=1)[0].strip()
    quote = rest[0]
    chars: list[str] = []
    index = 1
    while index < len(rest):
        char = rest[index]
        if quote == '"' and char == "\\" and index + 1 < len(rest):
            follower = rest[index + 1]
            chars.append(_DOUBLE_QUOTE_ESCAPES.get(follower, "\\" + follower))
            index += 2
            continue
        if char == quote:
            break
        chars.append(char)
        index += 1
    else:
        raise Invalid(f"the {quote} quote is not closed")
    trailing = rest[index + 1 :].strip()
    if trailing and not trailing.startswith("#"):
        raise Invalid(f"text {show_value(trailing)} follows the closing {quote} quote")
    return "".join(chars)


def _absolute(base: Path, path: str) -> Path:
    return Path(os.path.normpath(base / Path(path).expanduser()))


def _find_config(config_path: str | None, environ: Mapping[str, str], base: Path) -> Path | None:
    """The TOML file to read: `--config`, else `$EDGE_SCHED_CONFIG`, else `./config.toml` if present."""
    if config_path is not None:
        origin = "--config"
        if not config_path.strip():
            raise ConfigError(f"{origin}: '' is empty; expected a path to a TOML file", source=origin)
        path = _absolute(base, config_path)
    elif environ.get(CONFIG_ENV_VAR, "").strip():
        origin = f"{CONFIG_ENV_VAR} from env"
        path = _absolute(base, environ[CONFIG_ENV_VAR].strip())
    else:
        candidate = base / DEFAULT_CONFIG_NAME
        return candidate if candidate.exists() else None
    if not path.exists():
        raise ConfigError(
            f"{origin}: {path} does not exist; expected a path to a readable TOML file",
            key=CONFIG_ENV_VAR if origin != "--config" else None,
            source=origin,
        )
    return path


def _read_text(path: Path, label: str, what: str) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{label}: cannot read the file ({exc.strerror or exc}); expected a readable {what}",
            source=label,
        ) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{label}: not UTF-8 (bad byte at offset {exc.start}); expected a UTF-8 {what}",
            source=label,
        ) from None


def _suggest(word: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]}?)" if close else ""


def _toml_layer(path: Path) -> _Layer:
    label = f"toml:{path}"
    text = _read_text(path, label, "TOML file")
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{label}: invalid TOML: {exc}; expected a valid TOML document", source=label
        ) from None

    values: dict[str, object] = {}
    sections = ", ".join(f"[{name}]" for name in SECTION_NAMES)
    for section, table in document.items():
        if section not in SECTION_NAMES:
            if isinstance(table, dict):
                hint = _suggest(f"[{section}]", [f"[{name}]" for name in SECTION_NAMES])
                problem = f"unknown section [{section}]{hint}"
            else:
                dotted = [spec.toml_name for spec in TOML_KEYS.values() if spec.field == section]
                hint = f" (did you mean {dotted[0]}?)" if dotted else ""
                problem = f"unknown top-level key {section!r}{hint}"
            raise ConfigError(
                f"{label}: {problem}; expected keys inside the sections {sections}",
                key=section,
                source=label,
            )
        fields = [spec.field for spec in TOML_KEYS.values() if spec.section == section]
        if not isinstance(table, dict):
            raise ConfigError(
                f"{label}: {section} is not a table; expected a [{section}] table with the keys "
                + ", ".join(fields),
                key=section,
                source=label,
            )
        for field, raw in table.items():
            spec = TOML_KEYS.get((section, field))
            if spec is None:
                hint = _suggest(field, fields)
                hint = hint.replace("mean ", f"mean {section}.") if hint else ""
                raise ConfigError(
                    f"{label}: unknown key {section}.{field}{hint}; "
                    f"expected one of the [{section}] keys " + ", ".join(fields),
                    key=f"{section}.{field}",
                    source=label,
                )
            values[spec.env] = raw
    return _Layer(label, values)


def _dotenv_layer(path: Path) -> tuple[_Layer, list[str]]:
    label = f".env:{path}"
    values: dict[str, object] = {}
    lines: dict[str, int] = {}
    warnings: list[str] = []
    for lineno, key, value in parse_dotenv(_read_text(path, label, ".env file"), origin=label):
        if key in KEYS_BY_ENV:
            values[key] = value  # a repeated key: the last line wins, as in a shell
            lines[key] = lineno
        elif key == CONFIG_ENV_VAR:
            warnings.append(
                f"{label} line {lineno}: {key} is read from the process environment only; ignored"
            )
        else:
            hint = _suggest(key, list(KEYS_BY_ENV))
            warnings.append(f"{label} line {lineno}: unknown key {key} ignored{hint}")
    return _Layer(label, values, lines), warnings


def _environ_layer(environ: Mapping[str, str]) -> _Layer:
    # Only our names are looked at: the rest of the environment is none of our business.
    return _Layer("env", {spec.env: environ[spec.env] for spec in KEYS if spec.env in environ})


def _parse(spec: KeySpec, raw: object, layer: _Layer) -> object:
    try:
        return spec.kind.parse(raw)
    except Invalid as exc:
        where = layer.label
        if spec.env in layer.lines:
            where += f" line {layer.lines[spec.env]}"
        if spec.secret:
            shown = "'***'"
        else:
            shown = exc.subject if exc.subject is not None else show_value(raw)
        raise ConfigError(
            f"{spec.label} from {where}: {shown} {exc.problem}; expected {spec.kind.expected}",
            key=spec.env,
            source=layer.label,
        ) from None


def _resolve(layers: Sequence[_Layer]) -> tuple[dict[str, object], dict[str, str]]:
    """Typed value and source per ENV name; later layers win. Runs the cross-field checks."""
    values: dict[str, object] = {}
    sources: dict[str, str] = {}
    for spec in KEYS:
        value: object = spec.default
        source = "default"
        for layer in layers:
            if spec.env in layer.values:
                value = _parse(spec, layer.values[spec.env], layer)
                source = layer.label
        values[spec.env] = value
        sources[spec.env] = source
    _check_cross_fields(values, sources)
    return values, sources


def _build(values: Mapping[str, object]) -> Settings:
    fields: dict[str, dict[str, object]] = {name: {} for name in SECTION_TYPES}
    for spec in KEYS:
        section = fields[spec.section]
        value = values[spec.env]
        if spec.field in section:
            # A switch with several ENV names is on only when every name is on (spec S3).
            value = bool(section[spec.field]) and bool(value)
        section[spec.field] = value
    return Settings(**{name: cls(**fields[name]) for name, cls in SECTION_TYPES.items()})


def _precedence(source: str) -> int:
    """Rank of a source label: default 0 < toml 1 < .env 2 < env 3."""
    for rank, prefix in ((3, "env"), (2, ".env:"), (1, "toml:")):
        if source == prefix or (prefix.endswith(":") and source.startswith(prefix)):
            return rank
    return 0


def _check_cross_fields(values: Mapping[str, object], sources: Mapping[str, str]) -> None:
    """Rules between keys; each failure names every key involved and its source."""

    def where(env: str) -> str:
        return f"{KEYS_BY_ENV[env].label} from {sources[env]}"

    cert, key, client_ca = values["TLS_CERT_FILE"], values["TLS_KEY_FILE"], values["TLS_CLIENT_CA_FILE"]
    if (cert is None) != (key is None):
        pair = ("TLS_CERT_FILE", "TLS_KEY_FILE")
        present, missing = pair if key is None else pair[::-1]
        raise ConfigError(
            f"{where(missing)}: not set while {present} is set (from {sources[present]}); "
            "expected TLS_CERT_FILE and TLS_KEY_FILE both set or both unset",
            key=missing,
            source=sources[missing],
        )
    if client_ca is not None and cert is None:
        raise ConfigError(
            f"{where('TLS_CLIENT_CA_FILE')}: {show_value(str(client_ca))} is set without a server "
            "certificate; expected TLS_CERT_FILE and TLS_KEY_FILE to be set too "
            "(client certificates need TLS)",
            key="TLS_CLIENT_CA_FILE",
            source=sources["TLS_CLIENT_CA_FILE"],
        )
    for group in (
        ("WEIGHT_CPU", "WEIGHT_MEMORY"),
        ("GA_WEIGHT_CPU", "GA_WEIGHT_MEMORY", "GA_WEIGHT_BALANCE"),
        ("WEIGHT_CPU_POWER", "WEIGHT_GPU_POWER", "WEIGHT_FPGA_POWER"),
    ):
        if all(values[env] == 0 for env in group):
            # Blame the highest-precedence source involved: most likely the one just edited.
            blamed = max(group, key=lambda env: _precedence(sources[env]))
            names = " and ".join(where(env) for env in group)
            everything = "both are" if len(group) == 2 else "all are"
            raise ConfigError(
                f"{names}: {everything} 0; expected at least one of {', '.join(group)} > 0",
                key=blamed,
                source=sources[blamed],
            )
    if values["ENABLE_METRICS"] and values["METRICS_PORT"] == values["PORT"]:
        raise ConfigError(
            f"{where('METRICS_PORT')}: {values['METRICS_PORT']} is also PORT (from {sources['PORT']}); "
            "expected a port different from PORT while ENABLE_METRICS is true",
            key="METRICS_PORT",
            source=sources["METRICS_PORT"],
        )
