"""Kubernetes resource quantities ("250m", "1Gi", "1e3") as exact numbers.

This module owns the one parser every decision uses for quantities, so that
edge-sched agrees with the API server and kube-scheduler about what a pod asks
for and what a node offers (spec S5, filter rule 1).

Grammar (k8s.io/apimachinery ``resource.Quantity``)::

    <quantity>        ::= <signedNumber><suffix>
    <signedNumber>    ::= [+-]? ( <digits> [ . <digits>? ] | . <digits> )
    <suffix>          ::= <binarySI> | <decimalExponent> | <decimalSI>
    <binarySI>        ::= Ki | Mi | Gi | Ti | Pi | Ei
    <decimalSI>       ::= n | u | m | "" | k | M | G | T | P | E
    <decimalExponent> ::= ( e | E ) [+-]? <digits>

Values are ``fractions.Fraction`` so nothing is lost to binary floating point,
and conversion to the integers the scheduler compares (millicores, bytes)
rounds *up*, as kube-scheduler's ``MilliValue()``/``Value()`` do: a pod that
asks for some of a resource is never counted as asking for none.

Deliberate differences from apimachinery, each stricter:

* A bare suffix ("k", "Mi") is rejected; apimachinery reads it as 0, which
  hides typos.
* Parsed values are not capped at 2**63-1; they stay exact. Only the integer
  amounts the scheduler compares (``canonical_amount``) saturate, at
  ``MAX_AMOUNT`` = 10**40, far above any real node and far below where later
  float arithmetic (scores, power demand) would overflow on a "1e999" request.
* Extended resources must be exact whole numbers. API validation checks
  ``MilliValue() % 1000 == 0``, which lets e.g. "1.9999" through as 2.
* Mantissa length and exponent size are bounded (``MAX_DIGITS``,
  ``MAX_EXPONENT``) so that a hostile string cannot make exact arithmetic
  slow; real quantities are far below both bounds.
"""

from __future__ import annotations

import functools
import math
import re
from fractions import Fraction
from typing import Final

__all__ = [
    "MAX_AMOUNT",
    "MAX_DIGITS",
    "MAX_EXPONENT",
    "QuantityError",
    "canonical_amount",
    "format_amount",
    "is_extended_resource",
    "parse_quantity",
    "parse_resource_quantity",
    "resource_amount",
    "to_milli",
    "to_nano",
    "to_units",
]

MAX_AMOUNT: Final = 10**40
"""Largest canonical amount; larger ones saturate here (floats hold up to ~1.8e308)."""

MAX_DIGITS: Final = 1000
"""Most digits accepted in a mantissa (integer and fraction part together)."""

MAX_EXPONENT: Final = 1000
"""Largest absolute decimal exponent accepted after ``e``/``E``."""

_DECIMAL_SI: Final[dict[str, Fraction]] = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 10**3),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
}

_BINARY_SI: Final[dict[str, Fraction]] = {
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}

_MULTIPLIERS: Final[dict[str, Fraction]] = {**_DECIMAL_SI, **_BINARY_SI}

# Names used only to explain a mis-cased suffix ("1K", "16g", "1ki").
_SUFFIX_NAMES: Final[dict[str, str]] = {
    "k": "kilo",
    "M": "mega",
    "G": "giga",
    "T": "tera",
    "P": "peta",
    "E": "exa",
    "Ki": "kibi",
    "Mi": "mebi",
    "Gi": "gibi",
    "Ti": "tebi",
    "Pi": "pebi",
    "Ei": "exbi",
}

# [0-9], not \d: \d also matches non-ASCII digits such as "٣", which
# Kubernetes rejects and int() would happily accept.
_NUMBER: Final = re.compile(r"(?P<sign>[+-]?)(?P<int>[0-9]*)(?:\.(?P<frac>[0-9]*))?")
_EXPONENT: Final = re.compile(r"[eE](?P<exp>[+-]?[0-9]+)")
_EXPONENT_START: Final = re.compile(r"[eE][+-]?")

_BYTE_RESOURCES: Final = frozenset({"memory", "ephemeral-storage", "storage"})
_HUGEPAGES_PREFIX: Final = "hugepages-"
_NATIVE_DOMAIN: Final = "kubernetes.io"


class QuantityError(ValueError):
    """A quantity is malformed, or not a valid amount of a given resource.

    ``str(error)`` is ``"'<text>': <reason>"``, ready to follow a field path.
    """

    def __init__(self, text: str, reason: str) -> None:
        super().__init__(f"{text!r}: {reason}")
        self.text = text
        self.reason = reason


@functools.lru_cache(maxsize=1024)  # pods repeat a few quantities ("100m", "64Mi") call after call
def parse_quantity(text: str) -> Fraction:
    """Parse a Kubernetes quantity to its exact value in base units.

    Args:
        text: the quantity as written, e.g. ``"250m"``, ``"1.5Gi"``, ``"1e3"``.

    Returns:
        The exact value; negative when the text has a ``-`` sign.

    Raises:
        QuantityError: the text is not a quantity; the message says why.
    """
    if not text:
        raise QuantityError(text, "empty quantity")
    if text != text.strip():
        raise QuantityError(text, "leading or trailing whitespace is not allowed")
    number = _NUMBER.match(text)
    assert number is not None  # every part of the pattern is optional
    int_digits, frac_digits = number["int"], number["frac"] or ""
    suffix = text[number.end() :]
    if not int_digits and not frac_digits:
        raise QuantityError(text, _no_number_reason(suffix))
    if len(int_digits) + len(frac_digits) > MAX_DIGITS:
        raise QuantityError(text, f"more than {MAX_DIGITS} digits")
    magnitude = Fraction(int(int_digits + frac_digits), 10 ** len(frac_digits))
    value = magnitude * _suffix_multiplier(text, suffix)
    return -value if number["sign"] == "-" else value


def _no_number_reason(suffix: str) -> str:
    if suffix and suffix in _MULTIPLIERS:
        return f"a number is required before the suffix {suffix!r}"
    return "must start with a number (digits with an optional sign and at most one '.')"


def _suffix_multiplier(text: str, suffix: str) -> Fraction:
    # Table lookup first: "E" alone is the exa suffix, not an exponent.
    if suffix in _MULTIPLIERS:
        return _MULTIPLIERS[suffix]
    exponent = _EXPONENT.fullmatch(suffix)
    if exponent is not None:
        power = int(exponent["exp"])
        if abs(power) > MAX_EXPONENT:
            raise QuantityError(text, f"exponent {power} is outside ±{MAX_EXPONENT}")
        return Fraction(10) ** power
    raise QuantityError(text, _bad_suffix_reason(suffix))


def _bad_suffix_reason(suffix: str) -> str:
    if not suffix[0].isalpha():
        return f"unexpected {suffix[0]!r} after the number"
    exponent = _EXPONENT.match(suffix)
    if exponent is not None:
        rest = suffix[exponent.end() :]
        return f"exponent {exponent.group()!r} cannot be followed by {rest!r}"
    if _EXPONENT_START.fullmatch(suffix):
        hint = " (exa is upper-case 'E')" if suffix == "e" else ""
        return f"exponent {suffix!r} has no digits{hint}"
    hint = _suffix_hint(suffix)
    return f"unknown suffix {suffix!r} ({hint})"


def _suffix_hint(suffix: str) -> str:
    for canonical, name in _SUFFIX_NAMES.items():
        if suffix.casefold() == canonical.casefold():
            if len(canonical) == 1:
                case = "lower" if canonical.islower() else "upper"
                return f"{name} is {case}-case {canonical!r}"
            return f"{name} is {canonical!r}"
    if suffix[-1] in "bB" and suffix[:-1] in _MULTIPLIERS:
        return "there is no byte unit: a plain number is bytes, e.g. '1Gi' or '1G'"
    return "valid: n u m k M G T P E, Ki Mi Gi Ti Pi Ei, or an exponent like e3"


def to_milli(value: Fraction) -> int:
    """Whole thousandths, rounded up: ``0.1m`` of CPU is 1 millicore, never 0."""
    return math.ceil(value * 1000)


def to_units(value: Fraction) -> int:
    """Whole base units, rounded up: ``500m`` of memory is 1 byte, never 0."""
    return math.ceil(value)


def to_nano(value: Fraction) -> int:
    """Whole billionths, rounded up, the finest unit apimachinery keeps."""
    return math.ceil(value * 10**9)


def is_extended_resource(name: str) -> bool:
    """True for a resource outside the ``kubernetes.io`` domain (``nvidia.com/gpu``).

    Unprefixed names (``cpu``, ``hugepages-2Mi``) and names in
    ``kubernetes.io`` or one of its subdomains are native.
    """
    domain, slash, _ = name.partition("/")
    if not slash:
        return False
    return domain != _NATIVE_DOMAIN and not domain.endswith("." + _NATIVE_DOMAIN)


def parse_resource_quantity(resource: str, text: str) -> Fraction:
    """Parse ``text`` as an amount of ``resource``, exactly.

    Use this when amounts are summed before conversion (pod requests), so that
    rounding happens once, on the total, as kube-scheduler does.

    Raises:
        QuantityError: malformed, negative, or a fraction of an extended resource.
    """
    value = parse_quantity(text)
    if value < 0:
        raise QuantityError(text, "must not be negative")
    if is_extended_resource(resource) and value.denominator != 1:
        raise QuantityError(text, "extended resources must be whole numbers")
    return value


def canonical_amount(resource: str, value: Fraction) -> int:
    """The integer the scheduler compares: millicores for ``cpu``, else base units,
    at most ``MAX_AMOUNT``."""
    return min(to_milli(value) if resource == "cpu" else to_units(value), MAX_AMOUNT)


def resource_amount(resource: str, text: str) -> int:
    """Parse ``text`` as an amount of ``resource`` to its canonical integer.

    Args:
        resource: the resource name, e.g. ``"cpu"``, ``"memory"``, ``"nvidia.com/gpu"``.
        text: the quantity as written.

    Returns:
        Millicores for ``cpu``; base units (bytes, pods, devices…) otherwise,
        rounded up.

    Raises:
        QuantityError: malformed, negative, or a fraction of an extended resource.
    """
    return canonical_amount(resource, parse_resource_quantity(resource, text))


def _is_byte_resource(resource: str) -> bool:
    return resource in _BYTE_RESOURCES or resource.startswith(_HUGEPAGES_PREFIX)


def format_amount(resource: str, amount: int) -> str:
    """Human form of a canonical amount, for reasons and logs.

    CPU millicores print as cores when whole (``4000`` → ``"4"``), else with
    ``m`` (``1500`` → ``"1500m"``). Byte resources use the largest binary
    suffix that is exact (``268435456`` → ``"256Mi"``). Everything else is a
    plain integer. ``resource_amount`` reads every output back unchanged.
    """
    if resource == "cpu":
        cores, millis = divmod(amount, 1000)
        return str(cores) if millis == 0 else f"{amount}m"
    if _is_byte_resource(resource) and amount != 0:
        # Largest first; the table is in ascending order.
        for suffix, multiplier in reversed(_BINARY_SI.items()):
            units, remainder = divmod(amount, multiplier.numerator)
            if remainder == 0:
                return f"{units}{suffix}"
    return str(amount)
