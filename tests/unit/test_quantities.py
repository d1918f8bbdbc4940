"""Quantity parsing and conversion: field cases C12, C13, C14, C16, C17 and properties."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from edge_sched.core.quantities import (
    MAX_AMOUNT,
    MAX_DIGITS,
    MAX_EXPONENT,
    QuantityError,
    canonical_amount,
    format_amount,
    is_extended_resource,
    parse_quantity,
    parse_resource_quantity,
    resource_amount,
    to_milli,
    to_nano,
    to_units,
)

# Written out independently of the module's tables.
SUFFIX_VALUES = {
    "n": Fraction(1, 1_000_000_000),
    "u": Fraction(1, 1_000_000),
    "m": Fraction(1, 1000),
    "": Fraction(1),
    "k": Fraction(1000),
    "M": Fraction(1_000_000),
    "G": Fraction(1_000_000_000),
    "T": Fraction(1_000_000_000_000),
    "P": Fraction(1_000_000_000_000_000),
    "E": Fraction(1_000_000_000_000_000_000),
    "Ki": Fraction(1024),
    "Mi": Fraction(1024**2),
    "Gi": Fraction(1024**3),
    "Ti": Fraction(1024**4),
    "Pi": Fraction(1024**5),
    "Ei": Fraction(1024**6),
}

NOT_A_NUMBER = "must start with a number (digits with an optional sign and at most one '.')"
VALID_SUFFIXES = "valid: n u m k M G T P E, Ki Mi Gi Ti Pi Ei, or an exponent like e3"
NO_BYTE_UNIT = "there is no byte unit: a plain number is bytes, e.g. '1Gi' or '1G'"


def reason(text: str) -> str:
    with pytest.raises(QuantityError) as info:
        parse_quantity(text)
    assert info.value.text == text
    assert str(info.value) == f"{text!r}: {info.value.reason}"
    return info.value.reason


# --- C13: fractional CPU in all its forms ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "millicores"),
    [("0.5", 500), ("1.5", 1500), ("100m", 100), ("4", 4000), ("1", 1000)],
)
def test_c13_cpu_millicores(text: str, millicores: int) -> None:
    assert resource_amount("cpu", text) == millicores


def test_c13_100m_is_a_tenth_of_a_core_not_one() -> None:
    assert parse_quantity("100m") == Fraction(1, 10)
    assert to_units(parse_quantity("100m")) == 1  # the accessor that misled users
    assert resource_amount("cpu", "100m") == 100


def test_c13_metrics_server_suffixes() -> None:
    assert parse_quantity("608u") == Fraction(608, 10**6)
    assert parse_quantity("95647727n") == Fraction(95_647_727, 10**9)
    assert resource_amount("cpu", "608u") == 1
    assert resource_amount("cpu", "95647727n") == 96


def test_c13_tenth_of_a_millicore_rounds_up_not_to_zero() -> None:
    assert parse_quantity("0.1m") == Fraction(1, 10_000)
    assert to_milli(parse_quantity("0.1m")) == 1
    assert resource_amount("cpu", "0.1m") == 1


@pytest.mark.parametrize("text", ["0.5n", "0.9n"])
def test_c13_sub_nano_rounds_up_to_one_nano(text: str) -> None:
    assert to_nano(parse_quantity(text)) == 1


# --- C14: exponent notation versus the E (exa) suffix ---------------------------------


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("129e6", Fraction(129_000_000)),
        ("1e3", Fraction(1000)),
        ("1E3", Fraction(1000)),
        ("1.3E+6", Fraction(1_300_000)),
        ("1E-3", Fraction(1, 1000)),
        ("1E", Fraction(10**18)),
        ("12E", Fraction(12 * 10**18)),
        ("0.5e-9", Fraction(1, 2 * 10**9)),
        ("1e+0", Fraction(1)),
        ("2e-07", Fraction(2, 10**7)),
    ],
)
def test_c14_exponents(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


def test_c14_half_nano_by_exponent_is_one_nano() -> None:
    assert to_nano(parse_quantity("0.5e-9")) == 1


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("1e", "exponent 'e' has no digits (exa is upper-case 'E')"),
        ("-3.01e-", "exponent 'e-' has no digits"),
        ("1e3Mi", "exponent 'e3' cannot be followed by 'Mi'"),
        ("1E+", "exponent 'E+' has no digits"),
    ],
)
def test_c14_invalid_exponents(text: str, why: str) -> None:
    assert reason(text) == why


# --- C16: bare suffixes and malformed strings -----------------------------------------


@pytest.mark.parametrize("text", ["k", "Mi", "u", "m", "E", "Ki", "-k", "+Mi"])
def test_c16_bare_suffix_is_rejected_not_zero(text: str) -> None:
    suffix = text.lstrip("+-")
    assert reason(text) == f"a number is required before the suffix {suffix!r}"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty quantity"),
        ("1b", f"unknown suffix 'b' ({NO_BYTE_UNIT})"),
        ("1.1.M", "unexpected '.' after the number"),
        ("1+1.0M", "unexpected '+' after the number"),
        ("aoeu", NOT_A_NUMBER),
        (".", NOT_A_NUMBER),
        ("+", NOT_A_NUMBER),
        ("--1", NOT_A_NUMBER),
        ("1i", f"unknown suffix 'i' ({VALID_SUFFIXES})"),
        (".5i", f"unknown suffix 'i' ({VALID_SUFFIXES})"),
        ("0.1am", f"unknown suffix 'am' ({VALID_SUFFIXES})"),
        ("1 k", "unexpected ' ' after the number"),
        ("1,5", "unexpected ',' after the number"),
        ("1_000", "unexpected '_' after the number"),
        ("\u0661", NOT_A_NUMBER),
    ],
)
def test_c16_malformed(text: str, why: str) -> None:
    assert reason(text) == why


@pytest.mark.parametrize("text", [" 1", "1 ", "\t1Gi", "1Gi\n", "\u00a0100m", " "])
def test_surrounding_whitespace_is_rejected_and_said(text: str) -> None:
    assert reason(text) == "leading or trailing whitespace is not allowed"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1.", Fraction(1)),
        (".001", Fraction(1, 1000)),
        ("1.G", Fraction(10**9)),
        ("+1", Fraction(1)),
        ("0", Fraction(0)),
        ("-0", Fraction(0)),
        ("007", Fraction(7)),
    ],
)
def test_c16_odd_but_valid(text: str, value: Fraction) -> None:
    assert parse_quantity(text) == value


def test_c16_dot_001_is_one_milli() -> None:
    assert resource_amount("cpu", ".001") == 1


def test_c16_negative_parses_but_is_never_a_valid_amount() -> None:
    assert parse_quantity("-1") == -1
    assert parse_quantity("-500m") == Fraction(-1, 2)
    for resource in ("cpu", "memory", "nvidia.com/gpu", "pods"):
        with pytest.raises(QuantityError, match="must not be negative"):
            resource_amount(resource, "-1")


# --- C17: case and base mix-ups -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("16g", "unknown suffix 'g' (giga is upper-case 'G')"),
        ("1K", "unknown suffix 'K' (kilo is lower-case 'k')"),
        ("1ki", "unknown suffix 'ki' (kibi is 'Ki')"),
        ("1mi", "unknown suffix 'mi' (mebi is 'Mi')"),
        ("1GB", f"unknown suffix 'GB' ({NO_BYTE_UNIT})"),
        ("1KiB", f"unknown suffix 'KiB' ({NO_BYTE_UNIT})"),
    ],
)
def test_c17_case_mixups_are_rejected_with_a_hint(text: str, why: str) -> None:
    assert reason(text) == why


def test_c17_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"^'1K': unknown suffix 'K' \(kilo is lower-case 'k'\)$"):
        parse_quantity("1K")


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1k", 1000),
        ("1Ki", 1024),
        ("100M", 100_000_000),
        ("100Mi", 104_857_600),
        ("1G", 1_000_000_000),
        ("1Gi", 1_073_741_824),
    ],
)
def test_c17_decimal_versus_binary(text: str, value: int) -> None:
    assert parse_quantity(text) == value
    assert resource_amount("memory", text) == value


def test_c17_memory_milli_is_half_a_byte_rounded_up() -> None:
    assert parse_quantity("500m") == Fraction(1, 2)
    assert resource_amount("memory", "500m") == 1


# --- C12: extended resources ----------------------------------------------------------


def test_c12_count_resource_written_with_giga_is_ten_billion() -> None:
    assert resource_amount("aliyun.com/gpu-mem", "10G") == 10_000_000_000


def test_c12_gpu() -> None:
    assert resource_amount("nvidia.com/gpu", "1") == 1
    assert resource_amount("nvidia.com/gpu", "2") == 2


@pytest.mark.parametrize("text", ["500m", "1.5", "0.5e0", "1500000001n"])
def test_c12_fractional_extended_resource_is_rejected_not_rounded(text: str) -> None:
    with pytest.raises(QuantityError) as info:
        resource_amount("nvidia.com/gpu", text)
    assert str(info.value) == f"{text!r}: extended resources must be whole numbers"


def test_whole_extended_resource_in_any_notation() -> None:
    assert resource_amount("example.com/fpga", "1000m") == 1
    assert resource_amount("example.com/fpga", "2e0") == 2
    assert resource_amount("example.com/fpga", "1Ki") == 1024


@pytest.mark.parametrize(
    ("name", "extended"),
    [
        ("cpu", False),
        ("memory", False),
        ("ephemeral-storage", False),
        ("hugepages-2Mi", False),
        ("pods", False),
        ("kubernetes.io/batteries", False),
        ("foo.kubernetes.io/thing", False),
        ("nvidia.com/gpu", True),
        ("example.com/fpga", True),
        ("aliyun.com/gpu-mem", True),
        ("notkubernetes.io/x", True),
        ("kubernetes.io.example.com/x", True),
    ],
)
def test_is_extended_resource(name: str, extended: bool) -> None:
    assert is_extended_resource(name) is extended


def test_native_resources_round_up_fractions() -> None:
    assert resource_amount("ephemeral-storage", "1.5") == 2
    assert resource_amount("hugepages-2Mi", "0.5") == 1
    assert resource_amount("pods", "110") == 110
    assert resource_amount("kubernetes.io/anything", "0.1") == 1


def test_parse_resource_quantity_is_exact() -> None:
    assert parse_resource_quantity("memory", "500m") == Fraction(1, 2)
    assert canonical_amount("memory", Fraction(1, 2)) == 1
    assert canonical_amount("cpu", Fraction(1, 2)) == 500


# --- Bounds against hostile input -----------------------------------------------------


def test_huge_exponent_is_refused_quickly() -> None:
    assert reason("1e999999999999") == f"exponent 999999999999 is outside ±{MAX_EXPONENT}"
    assert reason("1e-1001") == f"exponent -1001 is outside ±{MAX_EXPONENT}"
    assert parse_quantity(f"1e{MAX_EXPONENT}") == 10**MAX_EXPONENT


def test_huge_mantissa_is_refused() -> None:
    assert reason("9" * (MAX_DIGITS + 1)) == f"more than {MAX_DIGITS} digits"
    assert parse_quantity("9" * MAX_DIGITS) == 10**MAX_DIGITS - 1


# --- Conversions and formatting -------------------------------------------------------


def test_rounding_helpers() -> None:
    assert to_milli(Fraction(1, 3)) == 334
    assert to_units(Fraction(1, 3)) == 1
    assert to_nano(Fraction(1, 3)) == 333_333_334
    assert to_milli(Fraction(0)) == 0
    assert to_units(Fraction(7)) == 7


@pytest.mark.parametrize(
    ("resource", "amount", "text"),
    [
        ("cpu", 4000, "4"),
        ("cpu", 1500, "1500m"),
        ("cpu", 0, "0"),
        ("cpu", 1, "1m"),
        ("memory", 268_435_456, "256Mi"),
        ("memory", 1_073_741_824, "1Gi"),
        ("memory", 1024, "1Ki"),
        ("memory", 1536, "1536"),
        ("memory", 1_000_000_000, "1000000000"),
        ("memory", 0, "0"),
        ("memory", 2**60 * 3, "3Ei"),
        ("ephemeral-storage", 10 * 2**30, "10Gi"),
        ("hugepages-2Mi", 2**21, "2Mi"),
        ("nvidia.com/gpu", 2, "2"),
        ("aliyun.com/gpu-mem", 2**30, "1073741824"),
        ("pods", 110, "110"),
    ],
)
def test_format_amount(resource: str, amount: int, text: str) -> None:
    assert format_amount(resource, amount) == text


# --- Properties -----------------------------------------------------------------------

digits = st.text(alphabet="0123456789", min_size=1, max_size=25)
optional_digits = st.text(alphabet="0123456789", max_size=25)


@st.composite
def numbers(draw: st.DrawFn) -> tuple[str, Fraction]:
    """A mantissa in every accepted shape, with its exact value via Decimal."""
    sign = draw(st.sampled_from(["", "+", "-"]))
    shape = draw(st.sampled_from(["int", "int.", "int.frac", ".frac"]))
    whole = draw(digits) if shape != ".frac" else ""
    frac = draw(digits) if shape in ("int.frac", ".frac") else ""
    text = whole + ("." if "." in shape else "") + frac
    value = Fraction(Decimal(f"{whole or 0}.{frac or 0}"))
    return sign + text, -value if sign == "-" else value


@given(numbers(), st.sampled_from(sorted(SUFFIX_VALUES)))
def test_mantissa_and_suffix_parse_exactly(number: tuple[str, Fraction], suffix: str) -> None:
    text, value = number
    assert parse_quantity(text + suffix) == value * SUFFIX_VALUES[suffix]


@given(
    numbers(),
    st.sampled_from(["e", "E"]),
    st.sampled_from(["", "+", "-"]),
    st.integers(min_value=0, max_value=40),
)
def test_mantissa_and_exponent_parse_exactly(
    number: tuple[str, Fraction], letter: str, sign: str, power: int
) -> None:
    text, value = number
    exponent = -power if sign == "-" else power
    assert parse_quantity(f"{text}{letter}{sign}{power}") == value * Fraction(10) ** exponent


def outcome(text: str) -> Fraction | QuantityError:
    try:
        return parse_quantity(text)
    except QuantityError as exc:
        return exc


@given(st.text(max_size=30) | st.text(alphabet="0123456789.+-eEinumkKMGTP ", max_size=12))
def test_any_string_parses_or_raises_quantity_error(text: str) -> None:
    result = outcome(text)
    if isinstance(result, QuantityError):
        assert result.text == text
        assert result.reason
    else:
        assert isinstance(result, Fraction)


@given(st.integers(min_value=0, max_value=10**22))
def test_cpu_format_round_trip(millicores: int) -> None:
    assert resource_amount("cpu", format_amount("cpu", millicores)) == millicores


@given(
    st.one_of(
        st.integers(min_value=0, max_value=10**22),
        st.builds(lambda n, k: n * 2**k, st.integers(0, 2**20), st.integers(0, 70)),
    )
)
def test_memory_format_round_trip(nbytes: int) -> None:
    text = format_amount("memory", nbytes)
    assert resource_amount("memory", text) == nbytes
    assert resource_amount("hugepages-1Gi", format_amount("hugepages-1Gi", nbytes)) == nbytes


@given(st.fractions(min_value=0).filter(lambda v: v > 0))
def test_rounding_never_loses_a_positive_amount(value: Fraction) -> None:
    milli = to_milli(value)
    assert milli >= 1
    assert value * 1000 <= milli < value * 1000 + 1
    assert to_units(value) >= 1
    assert value <= to_units(value) < value + 1
    assert to_nano(value) >= 1


@given(numbers(), st.sampled_from(["m", "u", "n", "", "k"]))
def test_cpu_amount_is_ceiling_of_exact_value(number: tuple[str, Fraction], suffix: str) -> None:
    text, value = number
    exact = value * SUFFIX_VALUES[suffix]
    assume(exact >= 0)
    assert resource_amount("cpu", text + suffix) == -((-exact * 1000) // 1)


@pytest.mark.parametrize(("resource", "text"), [("cpu", "1e308"), ("memory", "9e999"), ("nvidia.com/gpu", "1e400")])
def test_huge_amounts_saturate_so_float_arithmetic_cannot_overflow(resource: str, text: str) -> None:
    # Found by tests/faults: a "1e308" cpu request made a float conversion overflow (HTTP 500).
    assert resource_amount(resource, text) == MAX_AMOUNT == 10**40
    assert float(resource_amount(resource, text)) / 1000.0 > 0
