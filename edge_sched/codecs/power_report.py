"""Wire formats of computing power (spec S6.1, S6.3), sans-I/O.

Node-Computing-Force-Information-Report (reporter -> daemon), all integers big-endian:

    report_id u32 | host_number u8 | host_number × host entry
    host entry: host_name 64 (UTF-8, NUL-padded) | total_memory u8 | available_memory u8
                | type u8 (1 CPU, 2 GPU, 3 FPGA) | count u8 | count × unit
    CPU unit  (4): power 3 (a big-endian float32 without its last byte) | load u8
    GPU unit  (5): tflops (int u8, hundredths u8) | memory GiB (int u8, hundredths u8) | load u8
    FPGA unit (3): tflops (int u8, hundredths u8) | load u8

Task-Computing-Force-Request (daemon -> router): N u8 | N × (cpu GHz, cpu cores, GPU CUDA
cores in hundreds, GPU GHz, FPGA logic units in thousands), one u8 each, clamped to 0..255.
Task-Computing-Force-Measurement-Result (router -> daemon): N u8 | N × (cpu power u16,
GPU TFLOPS (int, hundredths), FPGA TFLOPS (int, hundredths)).

Decoding is strict and total: any input either decodes completely or raises `DecodeError`
with a `reason` from `REPORT_ERROR_REASONS` / `ROUTER_ERROR_REASONS`; no other exception
escapes (C28). Lengths are checked against the bytes actually present before anything is
read, so a count field never makes the decoder allocate or loop beyond what arrived (all
counts are u8 anyway: at most 255 entries). The (integer, fraction) byte pairs are
integer + hundredths/100: (5, 5) is 5.05 and (5, 50) is 5.50 — the seed read them as the
text "5.5" in both cases, which the contract fixes.
"""

from __future__ import annotations

import functools
import math
import re
import struct
from collections.abc import Sequence
from typing import Final

from edge_sched.core.power import (
    ComputeType,
    ContainerProfile,
    HostPower,
    PowerReport,
    PowerUnit,
    RouterAnswer,
)
from edge_sched.errors import DecodeError

HOST_NAME_BYTES: Final = 64
HEADER_BYTES: Final = 5  # report_id + host_number
HOST_HEADER_BYTES: Final = HOST_NAME_BYTES + 4  # name, 2 memory bytes, type, count
UNIT_BYTES: Final = {ComputeType.CPU: 4, ComputeType.GPU: 5, ComputeType.FPGA: 3}
MAX_COUNT: Final = 255
MAX_HUNDREDTHS_VALUE: Final = 255.99

# Reasons a report is dropped; each is a value of computing_power_parse_errors_total{reason}.
TRUNCATED = "truncated"  # fewer bytes than the header or the counts require
TRAILING_BYTES = "trailing_bytes"  # more bytes than the counts require
UNKNOWN_TYPE = "unknown_type"
INVALID_VALUE = "invalid_value"  # load > 100, hundredths > 99, bad float, memory avail > total
INVALID_NAME = "invalid_name"  # bad UTF-8, empty, NUL inside, control characters
DUPLICATE_HOST = "duplicate_host"  # the same (host, type) twice in one packet
NO_HOSTS = "no_hosts"
REPORT_ERROR_REASONS: Final = (
    TRUNCATED, TRAILING_BYTES, UNKNOWN_TYPE, INVALID_VALUE, INVALID_NAME, DUPLICATE_HOST, NO_HOSTS,
)

# Router answers.
LENGTH_MISMATCH = "length_mismatch"
COUNT_MISMATCH = "count_mismatch"
ROUTER_ERROR_REASONS: Final = (LENGTH_MISMATCH, COUNT_MISMATCH, INVALID_VALUE)

_U32 = struct.Struct("!I")
_F32 = struct.Struct("!f")
_U16 = struct.Struct("!H")


# -- (integer, hundredths) pairs and 3-byte floats ---------------------------------------------


def decode_hundredths(integer: int, hundredths: int, where: str) -> float:
    """integer + hundredths/100; DecodeError if hundredths > 99."""
    if hundredths > 99:
        raise DecodeError(INVALID_VALUE, f"{where}: hundredths byte {hundredths} > 99")
    return integer + hundredths / 100


def encode_hundredths(value: float, where: str = "value") -> bytes:
    """The (integer, hundredths) pair nearest to `value`.

    Raises:
        ValueError: negative, not finite, or above 255.99.
    """
    if not math.isfinite(value) or value < 0 or round(value * 100) > 25599:
        raise ValueError(f"{where}: {value!r} is outside 0..{MAX_HUNDREDTHS_VALUE}")
    integer, hundredths = divmod(round(value * 100), 100)
    return bytes((integer, hundredths))


def decode_float24(raw: bytes | memoryview, where: str = "power") -> float:
    """The first 3 bytes of a big-endian float32, with a zero byte appended.

    Raises:
        DecodeError: NaN, ±infinity or negative (power cannot be).
    """
    (value,) = _F32.unpack(bytes(raw) + b"\x00")
    if not math.isfinite(value) or value < 0:
        raise DecodeError(INVALID_VALUE, f"{where}: {value!r} is not a finite power ≥ 0")
    return value + 0.0  # -0.0 -> 0.0


def encode_float24(value: float, where: str = "power") -> bytes:
    """The first 3 bytes of `value` as a big-endian float32 (the low mantissa byte is cut).

    Raises:
        ValueError: negative, not finite, or too large for a float32.
    """
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{where}: {value!r} is not a finite power ≥ 0")
    try:
        return _F32.pack(value)[:3]
    except OverflowError:
        raise ValueError(f"{where}: {value!r} does not fit a float32") from None


def truncate_float24(value: float) -> float:
    """What `value` reads as after a trip through the 3-byte encoding."""
    return decode_float24(encode_float24(value))


# -- report: decode -------------------------------------------------------------------------


# Compiled layouts; per-count unit layouts are built on first use (counts are u8: ≤ 256 each).
_HEADER = struct.Struct("!IB")
_HOST_HEADER = struct.Struct(f"!{HOST_NAME_BYTES}sBBBB")
_TYPES: Final = {int(k): k for k in ComputeType}
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc


@functools.cache
def _words(count: int) -> struct.Struct:
    return struct.Struct(f"!{count}I")


@functools.cache
def _floats(count: int) -> struct.Struct:
    return struct.Struct(f"!{count}f")


@functools.cache
def _bytes(count: int) -> struct.Struct:
    return struct.Struct(f"!{count}B")


class _Where:
    """`host[i]` for messages, formatted only when a message is built."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __str__(self) -> str:
        return f"host[{self.index}]"


def _truncated(what: str, need: int, pos: int, size: int) -> DecodeError:
    return DecodeError(TRUNCATED, f"{what}: needs {need} bytes at offset {pos}, {max(size - pos, 0)} left")


def decode_report(data: bytes | bytearray | memoryview) -> PowerReport:
    """Decode one report datagram, all or nothing.

    Written for the listener's hot path (tens of thousands of datagrams per second):
    fixed layouts are read with precompiled `struct`s straight from the buffer, and
    messages are only built for datagrams that fail.

    Args:
        data: the datagram as received (any bytes-like object).

    Returns:
        The report; host entries in packet order.

    Raises:
        DecodeError: with `reason` in `REPORT_ERROR_REASONS`.
    """
    view = memoryview(data)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    size = len(view)
    if size < HEADER_BYTES:
        raise _truncated("header", HEADER_BYTES, 0, size)
    report_id, host_number = _HEADER.unpack_from(view, 0)
    if host_number == 0:
        raise DecodeError(NO_HOSTS, "host_number is 0: a report must carry at least one host")
    # The smallest possible host entries must fit before any is decoded.
    if size - HEADER_BYTES < host_number * HOST_HEADER_BYTES:
        raise _truncated(f"{host_number} host entries", host_number * HOST_HEADER_BYTES, HEADER_BYTES, size)
    pos = HEADER_BYTES
    hosts: list[HostPower] = []
    seen: set[tuple[str, ComputeType]] = set()
    for index in range(host_number):
        if size - pos < HOST_HEADER_BYTES:
            raise _truncated(f"host[{index}]", HOST_HEADER_BYTES, pos, size)
        raw_name, total, available, type_byte, count = _HOST_HEADER.unpack_from(view, pos)
        pos += HOST_HEADER_BYTES
        where = _Where(index)
        name = decode_host_name(raw_name, where)
        if available > total:
            raise DecodeError(
                INVALID_VALUE, f"{where}: available_memory {available} GiB > total_memory {total} GiB"
            )
        kind = _TYPES.get(type_byte)
        if kind is None:
            raise DecodeError(
                UNKNOWN_TYPE, f"{where}.computing_force_type: {type_byte} (expected 1 CPU, 2 GPU, 3 FPGA)"
            )
        need = count * UNIT_BYTES[kind]
        if size - pos < need:
            raise _truncated(f"{where}: {count} {kind.label} units", need, pos, size)
        units = _decode_units(kind, view, pos, count, where)
        pos += need
        if (name, kind) in seen:
            raise DecodeError(DUPLICATE_HOST, f"{where}: {name!r} has a second {kind.label} entry")
        seen.add((name, kind))
        hosts.append(HostPower(name, kind, total, available, units))
    if pos != size:
        raise DecodeError(
            TRAILING_BYTES,
            f"{size - pos} bytes after the last host entry (packet is {size}, the counts imply {pos})",
        )
    return PowerReport(report_id, tuple(hosts))


def _decode_units(
    kind: ComputeType, view: memoryview, pos: int, count: int, where: object
) -> tuple[PowerUnit, ...]:
    if count == 0:
        return ()
    if kind is ComputeType.CPU:
        words = _words(count).unpack_from(view, pos)
        loads = [w & 0xFF for w in words]
        # The 3 power bytes are the top of a float32 whose low byte is zero.
        powers = _floats(count).unpack(_words(count).pack(*[w & 0xFFFFFF00 for w in words]))
        for i, power in enumerate(powers):
            if not 0 <= power < math.inf:  # NaN fails both comparisons
                raise DecodeError(INVALID_VALUE, f"{where}.cpu[{i}].power: {power!r} is not a finite power ≥ 0")
        _check_loads(loads, where, "cpu")
        if 0.0 in powers:  # -0.0 == 0.0: normalise the sign
            powers = tuple(p + 0.0 for p in powers)
        return tuple(map(_unit, powers, loads))
    if kind is ComputeType.GPU:
        raw = _bytes(5 * count).unpack_from(view, pos)
        loads = list(raw[4::5])
        _check_hundredths(raw[1::5], where, "gpu", "tflops")
        _check_hundredths(raw[3::5], where, "gpu", "memory")
        _check_loads(loads, where, "gpu")
        return tuple(
            _gpu_unit(raw[i] + raw[i + 1] / 100, raw[i + 4], raw[i + 2] + raw[i + 3] / 100)
            for i in range(0, 5 * count, 5)
        )
    raw = _bytes(3 * count).unpack_from(view, pos)
    loads = list(raw[2::3])
    _check_hundredths(raw[1::3], where, "fpga", "tflops")
    _check_loads(loads, where, "fpga")
    return tuple(_unit(raw[i] + raw[i + 1] / 100, raw[i + 2]) for i in range(0, 3 * count, 3))


# Units are immutable values and repeat across reports (a node's clock is fixed, loads are
# 0..100), so equal ones are shared: building records dominated decoding at 20k reports/s.
@functools.lru_cache(maxsize=65536)
def _unit(power: float, load: int) -> PowerUnit:
    return PowerUnit(power, load)


@functools.lru_cache(maxsize=65536)
def _gpu_unit(power: float, load: int, memory: float) -> PowerUnit:
    return PowerUnit(power, load, memory)


def _check_loads(loads: Sequence[int], where: object, label: str) -> None:
    if max(loads) > 100:
        i = next(i for i, v in enumerate(loads) if v > 100)
        raise DecodeError(INVALID_VALUE, f"{where}.{label}[{i}].load: {loads[i]}% > 100")


def _check_hundredths(values: Sequence[int], where: object, label: str, field: str) -> None:
    if max(values) > 99:
        i = next(i for i, v in enumerate(values) if v > 99)
        raise DecodeError(INVALID_VALUE, f"{where}.{label}[{i}].{field}: hundredths byte {values[i]} > 99")


def decode_host_name(raw: bytes, where: object = "host") -> str:
    """The NUL-padded UTF-8 name: padding only at the end, non-empty, no control characters.

    Control characters are refused because names reach logs and label values.
    """
    text_bytes = raw.rstrip(b"\x00")
    if not text_bytes:
        raise DecodeError(INVALID_NAME, f"{where}.host_name: empty")
    if b"\x00" in text_bytes:
        raise DecodeError(INVALID_NAME, f"{where}.host_name: NUL byte inside the name (only trailing padding)")
    try:
        name = text_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecodeError(INVALID_NAME, f"{where}.host_name: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    if _CONTROL.search(name):
        raise DecodeError(INVALID_NAME, f"{where}.host_name: {name!r} contains control characters")
    return name


# -- report: encode -------------------------------------------------------------------------


def encode_host_name(name: str) -> bytes:
    """`name` as UTF-8, NUL-padded to 64 bytes.

    Raises:
        ValueError: empty, longer than 64 bytes, or containing NUL / control characters.
    """
    raw = name.encode("utf-8")
    if not raw or len(raw) > HOST_NAME_BYTES:
        raise ValueError(f"host name {name!r}: must be 1..{HOST_NAME_BYTES} UTF-8 bytes, is {len(raw)}")
    if _CONTROL.search(name):
        raise ValueError(f"host name {name!r}: contains control characters")
    return raw.ljust(HOST_NAME_BYTES, b"\x00")


def _u8(value: int, where: str, high: int = 255) -> bytes:
    if not 0 <= value <= high:
        raise ValueError(f"{where}: {value} is outside 0..{high}")
    return bytes((value,))


def encode_report(report: PowerReport) -> bytes:
    """The datagram for `report`.

    Raises:
        ValueError: a field does not fit its wire field (a name over 64 bytes, more than
            255 hosts or units, load outside 0..100, power out of range…).
    """
    if not 1 <= len(report.hosts) <= MAX_COUNT:
        raise ValueError(f"a report carries 1..{MAX_COUNT} host entries, not {len(report.hosts)}")
    if not 0 <= report.report_id <= 0xFFFFFFFF:
        raise ValueError(f"report_id {report.report_id} is not a u32")
    parts = [_U32.pack(report.report_id), bytes((len(report.hosts),))]
    for i, host in enumerate(report.hosts):
        where = f"host[{i}]"
        parts.append(encode_host_name(host.name))
        parts.append(_u8(host.total_memory_gib, f"{where}.total_memory"))
        parts.append(_u8(host.available_memory_gib, f"{where}.available_memory", host.total_memory_gib))
        parts.append(bytes((int(host.type),)))
        parts.append(_u8(len(host.units), f"{where}.count"))
        for j, unit in enumerate(host.units):
            uwhere = f"{where}.{host.type.label}[{j}]"
            load = _u8(unit.load_pct, f"{uwhere}.load", 100)
            if host.type is ComputeType.CPU:
                parts += [encode_float24(unit.power, f"{uwhere}.power"), load]
            elif host.type is ComputeType.GPU:
                memory = unit.memory_gib if unit.memory_gib is not None else 0.0
                parts += [
                    encode_hundredths(unit.power, f"{uwhere}.tflops"),
                    encode_hundredths(memory, f"{uwhere}.memory"),
                    load,
                ]
            else:
                parts += [encode_hundredths(unit.power, f"{uwhere}.tflops"), load]
    return b"".join(parts)


def report_size(hosts: Sequence[HostPower]) -> int:
    """Bytes `encode_report` produces for these host entries."""
    return HEADER_BYTES + sum(HOST_HEADER_BYTES + UNIT_BYTES[h.type] * len(h.units) for h in hosts)


# -- router (S6.3) -------------------------------------------------------------------------

# The five bytes of a container in a router request, in wire order.
ROUTER_FIELDS = ("cpu_ghz", "cpu_cores", "gpu_cuda_hundreds", "gpu_ghz", "fpga_kilo_logic_units")


def encode_router_request(profiles: Sequence[ContainerProfile]) -> tuple[bytes, tuple[str, ...]]:
    """The request datagram, each field clamped to 0..255 (never wrapped).

    Returns:
        The datagram and one warning per clamped field ("container 0 cpu_cores 300 -> 255").

    Raises:
        ValueError: no containers, or more than 255.
    """
    if not 1 <= len(profiles) <= MAX_COUNT:
        raise ValueError(f"a router request carries 1..{MAX_COUNT} containers, not {len(profiles)}")
    out = bytearray((len(profiles),))
    warnings: list[str] = []
    for i, profile in enumerate(profiles):
        for name, value in zip(ROUTER_FIELDS, profile.fields(), strict=True):
            clamped = min(255, max(0, value))
            if clamped != value:
                warnings.append(f"container {i} {name} {value} clamped to {clamped}")
            out.append(clamped)
    return bytes(out), tuple(warnings)


def decode_router_request(data: bytes | bytearray | memoryview) -> tuple[ContainerProfile, ...]:
    """The router's side of `encode_router_request` (fake routers in tests, tools)."""
    raw = bytes(data)
    if not raw or len(raw) != 1 + 5 * raw[0]:
        raise DecodeError(LENGTH_MISMATCH, f"request of {len(raw)} bytes does not match its count")
    return tuple(ContainerProfile(*raw[1 + 5 * i : 6 + 5 * i]) for i in range(raw[0]))


def decode_router_response(data: bytes | bytearray | memoryview, expected_count: int) -> tuple[RouterAnswer, ...]:
    """The router's answer to a request for `expected_count` containers.

    Raises:
        DecodeError: `count_mismatch` (N differs from the request's), `length_mismatch`
            (not exactly 1 + 6·N bytes), `invalid_value` (hundredths > 99).
    """
    raw = bytes(data)
    if not raw:
        raise DecodeError(LENGTH_MISMATCH, "empty answer")
    if raw[0] != expected_count:
        raise DecodeError(COUNT_MISMATCH, f"answer is for {raw[0]} containers, the request had {expected_count}")
    if len(raw) != 1 + 6 * expected_count:
        raise DecodeError(
            LENGTH_MISMATCH, f"answer has {len(raw)} bytes, {1 + 6 * expected_count} expected for N={expected_count}"
        )
    answers = []
    for i in range(expected_count):
        entry = raw[1 + 6 * i : 7 + 6 * i]
        (cpu_power,) = _U16.unpack(entry[:2])
        answers.append(
            RouterAnswer(
                cpu_power=cpu_power,
                gpu_tflops=decode_hundredths(entry[2], entry[3], f"container[{i}].gpu_tflops"),
                fpga_tflops=decode_hundredths(entry[4], entry[5], f"container[{i}].fpga_tflops"),
            )
        )
    return tuple(answers)


def encode_router_response(answers: Sequence[RouterAnswer]) -> bytes:
    """The router's side of `decode_router_response` (fake routers in tests, tools)."""
    out = bytearray((len(answers),))
    for a in answers:
        out += _U16.pack(a.cpu_power)
        out += encode_hundredths(a.gpu_tflops, "gpu_tflops")
        out += encode_hundredths(a.fpga_tflops, "fpga_tflops")
    return bytes(out)
