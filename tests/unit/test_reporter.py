"""The reporter's parsers (/proc, cpufreq, nvidia-smi) and how it builds a report (S6.6)."""

from __future__ import annotations

import argparse

import pytest

from edge_sched.adapters.reporter import Manual, Measured, ReporterOptions, add_report_arguments, build_hosts, options_from_args
from edge_sched.codecs.node_stats import (
    CpuTicks,
    GpuStat,
    Memory,
    cpu_loads,
    parse_cpuinfo_mhz,
    parse_khz,
    parse_meminfo,
    parse_nvidia_smi,
    parse_proc_stat,
)
from edge_sched.codecs.power_report import encode_report
from edge_sched.core.power import ComputeType, PowerReport
from tests.unit.test_power_codec import seed_test_packet

PROC_STAT_1 = """cpu  200 0 100 1000 50 0 0 0 0 0
cpu0 100 0 50 500 25 0 0 0 0 0
cpu1 100 0 50 500 25 0 0 0 0 0
intr 12345
ctxt 999
"""
PROC_STAT_2 = """cpu  500 0 200 1300 50 0 0 0 0 0
cpu0 250 0 100 550 25 0 0 0 0 0
cpu1 150 0 50 750 25 0 0 0 0 0
"""
CPUINFO = """processor\t: 0
model name\t: Some CPU
cpu MHz\t\t: 2400.123

processor\t: 1
cpu MHz\t\t: 1800.000
"""
MEMINFO = """MemTotal:       32768000 kB
MemFree:         1000000 kB
MemAvailable:   16777216 kB
"""


def test_proc_stat_and_loads() -> None:
    before, after = parse_proc_stat(PROC_STAT_1), parse_proc_stat(PROC_STAT_2)
    assert before == {0: CpuTicks(busy=150, total=675), 1: CpuTicks(busy=150, total=675)}
    # cpu0: busy +200 of +250 ticks = 80%; cpu1: busy +50 of +300 = 17%.
    assert cpu_loads(before, after) == {0: 80, 1: 17}
    assert cpu_loads(after, after) == {0: 0, 1: 0}
    assert parse_proc_stat("garbage\ncpuX 1 2 3\ncpu0 1 2\n") == {}


def test_cpuinfo_cpufreq_meminfo() -> None:
    assert parse_cpuinfo_mhz(CPUINFO) == {0: 2400.123, 1: 1800.0}
    assert parse_khz("3500000\n") == 3500.0 and parse_khz("x") is None and parse_khz("0") is None
    assert parse_meminfo(MEMINFO) == Memory(total_gib=31, available_gib=16)
    assert parse_meminfo("MemTotal: 999999999999 kB\n") == Memory(255, 0)  # u8 field
    assert parse_meminfo("nothing") is None


def test_nvidia_smi_csv() -> None:
    assert parse_nvidia_smi("35, 16384\n100, 81920\n[N/A], [N/A]\nbad\n") == [
        GpuStat(35, 16.0), GpuStat(100, 80.0), GpuStat(0, 0.0)
    ]


def options(*argv: str) -> ReporterOptions:
    parser = argparse.ArgumentParser()
    add_report_arguments(parser)
    return options_from_args(parser.parse_args(["--target", "127.0.0.1:8001", *argv]))


def test_hand_made_report_is_the_seed_test_packet() -> None:
    opts = options("--node-name", "test-node-1", "--cpu-count", "1", "--cpu-power", "2.5", "--load", "60",
                   "--total-memory", "100", "--available-memory", "80")
    assert encode_report(PowerReport(1, build_hosts(opts, Measured()))) == seed_test_packet()


def test_measured_report() -> None:
    opts = options("--node-name", "edge-1", "--efficiency", "0.5", "--gpu-tflops", "12.5")
    measured = Measured(
        memory=Memory(31, 16),
        cpu_mhz={0: 2400.0, 1: 1800.0},
        cpu_load={0: 80, 1: 0},
        gpus=(GpuStat(35, 16.0),),
    )
    cpu, gpu = build_hosts(opts, measured)
    assert (cpu.name, cpu.type, cpu.total_memory_gib, cpu.available_memory_gib) == ("edge-1", ComputeType.CPU, 31, 16)
    # clock × efficiency in GHz, as the 3-byte float carries it.
    assert [(u.power, u.load_pct) for u in cpu.units] == [(pytest.approx(1.2, abs=1e-4), 80), (pytest.approx(0.9, abs=1e-4), 0)]
    assert gpu.type is ComputeType.GPU and [(u.power, u.load_pct, u.memory_gib) for u in gpu.units] == [(12.5, 35, 16.0)]
    # The report encodes (3-byte CPU floats, hundredths for the GPU).
    encode_report(PowerReport(7, (cpu, gpu)))


def test_explicit_gpu_and_fpga_replace_measurement() -> None:
    opts = options("--node-name", "n", "--gpu-count", "2", "--gpu-tflops", "10", "--gpu-load", "95",
                   "--fpga-count", "1", "--fpga-tflops", "2.5", "--cpu-count", "4", "--cpu-power", "2")
    hosts = build_hosts(opts, Measured(memory=Memory(8, 4), gpus=(GpuStat(1, 1.0),)))
    assert [h.type for h in hosts] == [ComputeType.CPU, ComputeType.GPU, ComputeType.FPGA]
    assert hosts[1].available_power == pytest.approx(2 * 10 * 0.05)
    assert hosts[2].units[0].power == 2.5
    assert (hosts[0].total_memory_gib, hosts[0].available_memory_gib) == (8, 4)


@pytest.mark.parametrize(
    "argv",
    [["--target", "nohost"], ["--target", "h:0"], ["--target", "h:70000"], ["--target", "h:1", "--load", "101"],
     ["--target", "h:1", "--gpu-tflops", "256"], ["--target", "h:1", "--interval", "0"]],
)
def test_bad_arguments(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    add_report_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args(argv)


def test_manual_flags() -> None:
    assert not Manual().cpu_given
    assert Manual(cpu_load=3).cpu_given and Manual(gpu_count=0).gpu_given and Manual(fpga_load=1).fpga_given


def test_more_available_than_total_memory_is_refused_not_clamped() -> None:
    with pytest.raises(ValueError, match="^--available-memory 20 is more than --total-memory 10$"):
        options("--once", "--total-memory", "10", "--available-memory", "20")
