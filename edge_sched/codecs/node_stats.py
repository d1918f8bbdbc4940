"""Text formats the reporter reads (spec S6.6), parsed without I/O.

`/proc/stat` per-CPU tick counters, `/proc/cpuinfo` clocks, `/proc/meminfo`, the cpufreq
`cpuinfo_max_freq` files and `nvidia-smi --query-gpu=... --format=csv,noheader,nounits`.
Parsers skip what they do not understand instead of failing: a reporter on an odd kernel
should still send what it can.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import attrs

KIB_PER_GIB = 1024 * 1024
MIB_PER_GIB = 1024


@attrs.frozen
class CpuTicks:
    busy: int
    total: int


def parse_proc_stat(text: str) -> dict[int, CpuTicks]:
    """Per-CPU (cpuN lines, not the aggregate `cpu` line) busy and total ticks.

    Idle time is `idle` + `iowait`; guest time is already inside user/nice, so it is not
    added again.
    """
    result: dict[int, CpuTicks] = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields or not fields[0].startswith("cpu") or fields[0] == "cpu":
            continue
        try:
            index = int(fields[0][3:])
            values = [int(v) for v in fields[1:9]]
        except ValueError:
            continue
        if len(values) < 4:
            continue
        values += [0] * (8 - len(values))
        total = sum(values)
        idle = values[3] + values[4]
        result[index] = CpuTicks(busy=total - idle, total=total)
    return result


def cpu_loads(before: Mapping[int, CpuTicks], after: Mapping[int, CpuTicks]) -> dict[int, int]:
    """Per-CPU load in percent (0..100, rounded) between two samples.

    A CPU with no ticks in between (offline, or samples too close) reads 0.
    """
    loads: dict[int, int] = {}
    for cpu, now in after.items():
        then = before.get(cpu)
        if then is None:
            continue
        total = now.total - then.total
        busy = now.busy - then.busy
        loads[cpu] = 0 if total <= 0 else min(100, max(0, round(100 * busy / total)))
    return loads


def parse_cpuinfo_mhz(text: str) -> dict[int, float]:
    """`cpu MHz` per `processor` from /proc/cpuinfo (x86; other architectures may lack it)."""
    result: dict[int, float] = {}
    processor: int | None = None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip()
        try:
            if key == "processor":
                processor = int(value)
            elif key == "cpu MHz" and processor is not None:
                mhz = float(value)
                if math.isfinite(mhz) and mhz > 0:
                    result[processor] = mhz
        except ValueError:
            continue
    return result


def parse_khz(text: str) -> float | None:
    """A cpufreq file (`cpuinfo_max_freq`, kHz) as MHz."""
    try:
        khz = int(text.strip())
    except ValueError:
        return None
    return khz / 1000 if khz > 0 else None


@attrs.frozen
class Memory:
    total_gib: int
    available_gib: int


def parse_meminfo(text: str) -> Memory | None:
    """MemTotal and MemAvailable as whole GiB (rounded down, capped at 255 for the u8 field)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and parts:
            try:
                values[key.strip()] = int(parts[0])
            except ValueError:
                continue
    if "MemTotal" not in values:
        return None
    total = min(255, values["MemTotal"] // KIB_PER_GIB)
    available = min(total, values.get("MemAvailable", values.get("MemFree", 0)) // KIB_PER_GIB)
    return Memory(total, available)


@attrs.frozen
class GpuStat:
    load_pct: int
    memory_gib: float


NVIDIA_SMI_QUERY: Sequence[str] = ("--query-gpu=utilization.gpu,memory.total", "--format=csv,noheader,nounits")


def parse_nvidia_smi(text: str) -> list[GpuStat]:
    """Lines of `utilization.gpu, memory.total` (percent, MiB); `[N/A]` fields read as 0."""
    gpus: list[GpuStat] = []
    for line in text.splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) < 2:
            continue
        load = _number(fields[0])
        memory = _number(fields[1])
        gpus.append(GpuStat(min(100, max(0, round(load))), max(0.0, memory / MIB_PER_GIB)))
    return gpus


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) else 0.0
