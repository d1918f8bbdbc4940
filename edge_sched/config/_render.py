"""Text renderings of the configuration: effective settings, the example file, the docs table.

All three are generated from the key table so they cannot drift from the code: `edge-sched config`
prints `render_settings`, `config.toml.example` is `render_example_toml()` and the key table in
`docs/configuration.md` is `render_docs_table()` (unit tests compare the committed files).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from edge_sched.config._keys import KEYS, SECTION_NAMES, KeySpec
from edge_sched.config._loader import APP_DOTENV_PATH, CONFIG_ENV_VAR

if TYPE_CHECKING:
    from collections.abc import Iterator

    from edge_sched.config._loader import LoadedSettings

_EXAMPLE_HEADER = f"""\
# edge-sched configuration file (TOML).
#
# Generated from the key table (edge_sched/config/_keys.py) by render_example_toml(); a unit
# test fails when this file and the table disagree. Regenerate with:
#   python -m edge_sched.config example-toml > config.toml.example
#
# Use it by copying it to ./config.toml, passing --config PATH, or setting {CONFIG_ENV_VAR}=PATH.
# Precedence, lowest to highest: built-in defaults < this file < .env file (./.env, else
# {APP_DOTENV_PATH}) < process environment. Each comment starts with the key's environment name.
# Every key is shown with its default; keys unset by default are commented out with an example.
# Unknown sections or keys are errors. Values may be native TOML values or strings that parse
# ("8000", "yes"). Durations are in seconds unless the name ends in _min (minutes).
"""


def _groups(section: str) -> Iterator[list[KeySpec]]:
    """Keys of a section grouped by field, TOML key first (a two-name switch is one group)."""
    fields: dict[str, list[KeySpec]] = {}
    for spec in KEYS:
        if spec.section == section:
            fields.setdefault(spec.field, []).append(spec)
    for group in fields.values():
        yield sorted(group, key=lambda spec: not spec.in_toml)


def _type_doc(spec: KeySpec) -> str:
    return spec.kind.type_doc + (", secret" if spec.secret else "")


def _dotenv_quote(text: str) -> str:
    """Quote a value only when `.env` parsing would otherwise change it."""
    plain = (
        text == text.strip()
        and text[:1] not in {'"', "'"}
        and re.search(r"\s#", text) is None
        and "\n" not in text
        and "\r" not in text
    )
    if plain:
        return text
    escaped = (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def render_settings(loaded: LoadedSettings, *, show_sources: bool) -> str:
    """The effective configuration as `ENV_NAME=value` lines, one `# [section]` block per section.

    Secrets that are set print as `***`. The output (without secrets) is valid `.env` input that
    loads to the same settings, source comments included.

    Args:
        loaded: the result of `load_settings`.
        show_sources: append `  # from <source>` to each line.

    Returns:
        The text, ending with a newline.
    """
    lines: list[str] = []
    for section in SECTION_NAMES:
        if lines:
            lines.append("")
        lines.append(f"# [{section}]")
        section_settings = getattr(loaded.settings, section)
        for group in _groups(section):
            for spec in group:
                value = loaded.values.get(spec.env, getattr(section_settings, spec.field))
                masked = spec.secret and value is not None
                text = "***" if masked else _dotenv_quote(spec.kind.render(value))
                line = f"{spec.env}={text}"
                if show_sources:
                    line += f"  # from {loaded.sources.get(spec.env, 'default')}"
                lines.append(line)
            if len(group) > 1:
                first = group[0]
                effective = first.kind.render(getattr(section_settings, first.field))
                names = " and ".join(member.env for member in group)
                lines.append(f"# => {first.toml_name}={effective} (on only while {names} are all true)")
    return "\n".join(lines) + "\n"


def render_example_toml() -> str:
    """The content of `config.toml.example`: every key with its default, ENV name and meaning."""
    out = [_EXAMPLE_HEADER]
    for section in SECTION_NAMES:
        out.append(f"\n[{section}]\n")
        blocks: list[str] = []
        for group in _groups(section):
            primary = group[0]
            block = [f"# {primary.env} ({_type_doc(primary)}): {primary.doc}"]
            block.extend(
                f"# {spec.env} ({_type_doc(spec)}, environment only): {spec.doc}" for spec in group[1:]
            )
            literal = primary.kind.toml(primary.default)
            if literal is None:
                example = primary.kind.toml(primary.kind.parse(primary.example or ""))
                block.append("# Unset by default. Example:")
                block.append(f"# {primary.field} = {example}")
            else:
                block.append(f"{primary.field} = {literal}")
            blocks.append("\n".join(block) + "\n")
        out.append("\n".join(blocks))
    return "".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_docs_table() -> str:
    """The key reference of `docs/configuration.md`: one Markdown table per section."""
    out: list[str] = []
    for section in SECTION_NAMES:
        out.append(f"### `[{section}]`\n")
        out.append("| Environment | TOML | Type | Default | Meaning |")
        out.append("|---|---|---|---|---|")
        for group in _groups(section):
            for spec in group:
                toml_name = f"`{spec.toml_name}`" if spec.in_toml else "(environment only)"
                if spec.default is None:
                    default = "unset"
                else:
                    rendered = spec.kind.render(spec.default)
                    default = f"`{_cell(rendered)}`" if rendered else "empty"
                kind = _cell(_type_doc(spec))
                out.append(f"| `{spec.env}` | {toml_name} | {kind} | {default} | {_cell(spec.doc)} |")
        out.append("")
    return "\n".join(out)
