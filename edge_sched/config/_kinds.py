"""Value kinds: how one configuration value is parsed, checked and written back.

A kind owns the syntax of a value, so the process environment, a `.env` file and a TOML file
accept exactly the same spellings, and the same kind renders the value for `edge-sched config`,
for `config.toml.example` and for the docs table. Kinds know nothing about where a value came
from: they raise `Invalid` with the problem, and the loader adds the key and the source to make
the one-line `ConfigError` the operator sees.
"""

from __future__ import annotations

import abc
import ipaddress
import json
import math
import re
from pathlib import Path
from typing import Final, Generic, TypeVar

import attrs

T = TypeVar("T")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_TRUE: Final = frozenset({"true", "1", "yes", "on"})
_FALSE: Final = frozenset({"false", "0", "no", "off"})
_INT_RE: Final = re.compile(r"[+-]?[0-9]+")


class ConfigError(ValueError):
    """The configuration cannot be used; start-up must stop.

    `str()` is always one line naming the key (ENV name and TOML name), the source the value
    came from and what is expected, so it can be printed as the daemon's last log line.
    """

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None) -> None:
        # One line, whatever the parts contained: log collectors split on newlines.
        super().__init__(" ".join(message.splitlines()))
        self.key = key
        self.source = source


class Invalid(Exception):  # noqa: N818 - internal signal, always wrapped in ConfigError
    """A kind rejected a value; `problem` reads after the value ("is not a valid port").

    `subject`, when given, is shown instead of the whole raw value (e.g. the one bad CIDR of a list).
    """

    def __init__(self, problem: str, subject: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.subject = subject


def show_value(raw: object) -> str:
    """Render a raw value for an error message: quoted, escaped, bounded to keep one line."""
    text = ("true" if raw else "false") if isinstance(raw, bool) else repr(raw)
    return text if len(text) <= 80 else text[:77] + "..."


def toml_string(text: str) -> str:
    """A TOML string literal for `text`, readable for PromQL (quotes inside) and plain words alike."""
    if ('"' in text or "\\" in text) and "'" not in text and text.isprintable():
        return f"'{text}'"  # literal string: no escapes needed for PromQL's {mode="idle"}
    # JSON string escapes are a subset of TOML basic-string escapes; DEL must be escaped in TOML.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _range_text(lo: float | None, hi: float | None, *, lo_open: bool = False) -> str:
    if lo is not None and hi is not None and not lo_open:
        return f"{lo:g}-{hi:g}"
    parts = []
    if lo is not None:
        parts.append(f"> {lo:g}" if lo_open else f">= {lo:g}")
    if hi is not None:
        parts.append(f"<= {hi:g}")
    return " and ".join(parts)


class Kind(abc.ABC, Generic[T]):
    """Parser, checker and renderer for one type of configuration value."""

    __slots__ = ()

    @property
    @abc.abstractmethod
    def expected(self) -> str:
        """What a valid value looks like, completing "expected ..." in error messages."""

    @property
    @abc.abstractmethod
    def type_doc(self) -> str:
        """Short type description for the docs table."""

    @abc.abstractmethod
    def parse(self, raw: object) -> T:
        """Convert a raw value (a string, or a native TOML value) and check it.

        Raises:
            Invalid: the value does not parse or is out of range.
        """

    @abc.abstractmethod
    def check(self, value: object) -> None:
        """Check an already typed value (used by the attrs validators of the settings classes).

        Raises:
            Invalid: wrong type or out of range.
        """

    def render(self, value: T) -> str:
        """The value as it would be written in the environment (`parse(render(v)) == v`)."""
        return "" if value is None else str(value)

    def toml(self, value: T) -> str | None:
        """The value as a TOML literal, or None when it is unset (TOML has no null)."""
        return None if value is None else toml_string(self.render(value))


@attrs.frozen
class Bool(Kind[bool]):
    """true/false, 1/0, yes/no, on/off in any case; a native TOML boolean."""

    @property
    def expected(self) -> str:
        return "a boolean: true/false, 1/0, yes/no or on/off (any case)"

    @property
    def type_doc(self) -> str:
        return "bool"

    def parse(self, raw: object) -> bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str):
            word = raw.strip().lower()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
        raise Invalid("is not a boolean")

    def check(self, value: object) -> None:
        if not isinstance(value, bool):
            raise Invalid("is not a boolean")

    def render(self, value: bool) -> str:
        return "true" if value else "false"

    def toml(self, value: bool) -> str:
        return self.render(value)


@attrs.frozen
class Int(Kind[int | None]):
    """A whole number within bounds; `optional` makes an empty value mean unset (None).

    `invalid` replaces the generic problem texts, e.g. "is not a valid port".
    """

    min: int | None = None
    max: int | None = None
    optional: bool = False
    invalid: str | None = None
    name: str = "int"

    @property
    def expected(self) -> str:
        bounds = _range_text(self.min, self.max)
        text = f"an integer {bounds}" if bounds else "an integer"
        return f"{text}, or empty for unset" if self.optional else text

    @property
    def type_doc(self) -> str:
        bounds = _range_text(self.min, self.max)
        text = f"{self.name} {bounds}" if bounds else self.name
        return f"{text}, optional" if self.optional else text

    def parse(self, raw: object) -> int | None:
        if self.optional and isinstance(raw, str) and not raw.strip():
            return None
        if isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and _INT_RE.fullmatch(raw.strip()):
            value = int(raw.strip())
        else:
            raise Invalid(self.invalid or "is not an integer")
        self.check(value)
        return value

    def check(self, value: object) -> None:
        if value is None and self.optional:
            return
        if not isinstance(value, int) or isinstance(value, bool):
            raise Invalid(self.invalid or "is not an integer")
        if (self.min is not None and value < self.min) or (self.max is not None and value > self.max):
            raise Invalid(self.invalid or "is out of range")

    def toml(self, value: int | None) -> str | None:
        return None if value is None else str(value)


@attrs.frozen
class Float(Kind[float]):
    """A finite number within bounds; integers are accepted and stored as floats.

    `unit` ("seconds", "minutes") is named in the expectation so an operator sees the scale.
    """

    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False
    unit: str = ""

    @property
    def expected(self) -> str:
        bounds = _range_text(self.min, self.max, lo_open=self.min_exclusive)
        text = f"a number {bounds}" if bounds else "a number"
        return f"{text} ({self.unit})" if self.unit else text

    @property
    def type_doc(self) -> str:
        bounds = _range_text(self.min, self.max, lo_open=self.min_exclusive)
        text = f"float {bounds}" if bounds else "float"
        return f"{text}, {self.unit}" if self.unit else text

    def parse(self, raw: object) -> float:
        if isinstance(raw, int | float) and not isinstance(raw, bool):
            value = float(raw)
        elif isinstance(raw, str):
            try:
                value = float(raw.strip())
            except ValueError:
                raise Invalid("is not a number") from None
        else:
            raise Invalid("is not a number")
        self.check(value)
        return value

    def check(self, value: object) -> None:
        if not isinstance(value, float | int) or isinstance(value, bool):
            raise Invalid("is not a number")
        if not math.isfinite(value):
            raise Invalid("is not a finite number")
        too_low = self.min is not None and (value <= self.min if self.min_exclusive else value < self.min)
        if too_low or (self.max is not None and value > self.max):
            raise Invalid("is out of range")

    def render(self, value: float) -> str:
        return repr(float(value))

    def toml(self, value: float) -> str:
        return repr(float(value))


@attrs.frozen
class Choice(Kind[str]):
    """One of a fixed set of words, matched in any case and stored as spelled in `choices`."""

    choices: tuple[str, ...]

    @property
    def expected(self) -> str:
        return f"one of {', '.join(self.choices)} (any case)"

    @property
    def type_doc(self) -> str:
        return "one of " + ", ".join(self.choices)

    def parse(self, raw: object) -> str:
        if isinstance(raw, str):
            word = raw.strip().lower()
            for choice in self.choices:
                if choice.lower() == word:
                    return choice
        raise Invalid("is not a valid choice")

    def check(self, value: object) -> None:
        if value not in self.choices:
            raise Invalid("is not a valid choice")


@attrs.frozen
class Text(Kind[str]):
    """A string, stripped of surrounding whitespace, optionally matching `pattern` in full.

    Empty is rejected unless `allow_empty` (then it is stored as "" and means "off").
    """

    pattern: str | None = None
    description: str = "a non-empty string"
    problem: str = "is not valid"
    allow_empty: bool = False
    name: str = "string"

    @property
    def expected(self) -> str:
        return f"{self.description}, or empty" if self.allow_empty else self.description

    @property
    def type_doc(self) -> str:
        return self.name

    def parse(self, raw: object) -> str:
        if not isinstance(raw, str):
            raise Invalid("is not a string")
        value = raw.strip()
        self.check(value)
        return value

    def check(self, value: object) -> None:
        if not isinstance(value, str):
            raise Invalid("is not a string")
        if not value:
            if self.allow_empty:
                return
            raise Invalid("is empty")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise Invalid(self.problem)


@attrs.frozen
class OptionalText(Kind[str | None]):
    """A string that may be unset: empty (after stripping) means None."""

    pattern: str | None = None
    description: str = "a string, or empty for unset"
    problem: str = "is not valid"
    name: str = "string, optional"

    @property
    def expected(self) -> str:
        return self.description

    @property
    def type_doc(self) -> str:
        return self.name

    def parse(self, raw: object) -> str | None:
        if not isinstance(raw, str):
            raise Invalid("is not a string")
        value = raw.strip() or None
        self.check(value)
        return value

    def check(self, value: object) -> None:
        if value is None:
            return
        if not isinstance(value, str) or not value:
            raise Invalid("is not a non-empty string")
        if self.pattern is not None and not re.fullmatch(self.pattern, value):
            raise Invalid(self.problem)


@attrs.frozen
class OptionalPath(Kind[Path | None]):
    """A filesystem path that may be unset; `~` is expanded. Existence is checked by its user."""

    @property
    def expected(self) -> str:
        return "a file path, or empty for unset"

    @property
    def type_doc(self) -> str:
        return "path, optional"

    def parse(self, raw: object) -> Path | None:
        if not isinstance(raw, str):
            raise Invalid("is not a path string")
        text = raw.strip()
        if "\x00" in text:
            raise Invalid("is not a valid path")
        return Path(text).expanduser() if text else None

    def check(self, value: object) -> None:
        if value is not None and not isinstance(value, Path):
            raise Invalid("is not a pathlib.Path")


@attrs.frozen
class CidrList(Kind[tuple[IPNetwork, ...]]):
    """Comma-separated networks or addresses (TOML: an array of strings, or one such string).

    Host bits are allowed (`strict=False`), so `10.1.2.3/8` means `10.0.0.0/8` and a bare address
    is a /32 or /128. An empty list means "no restriction".
    """

    @property
    def expected(self) -> str:
        return "a comma-separated list of CIDRs or addresses (e.g. 10.0.0.0/8,192.168.1.7), or empty for all"

    @property
    def type_doc(self) -> str:
        return "CIDR list"

    def parse(self, raw: object) -> tuple[IPNetwork, ...]:
        entries: list[object]
        if isinstance(raw, str):
            entries = [part for part in raw.split(",") if part.strip()]
        elif isinstance(raw, list | tuple):
            entries = list(raw)
        else:
            raise Invalid("is not a list of CIDRs")
        networks: list[IPNetwork] = []
        for entry in entries:
            if not isinstance(entry, str):
                raise Invalid("is not a CIDR string", subject=show_value(entry))
            try:
                networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                raise Invalid("is not a valid CIDR", subject=show_value(entry.strip())) from None
        return tuple(networks)

    def check(self, value: object) -> None:
        if not isinstance(value, tuple) or not all(
            isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network) for net in value
        ):
            raise Invalid("is not a tuple of ipaddress networks")

    def render(self, value: tuple[IPNetwork, ...]) -> str:
        return ",".join(str(net) for net in value)

    def toml(self, value: tuple[IPNetwork, ...]) -> str:
        return "[" + ", ".join(toml_string(str(net)) for net in value) + "]"
