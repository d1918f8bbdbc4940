"""`edge-sched report`: the node agent that sends computing-power reports (spec S6.6).

Every `--interval` seconds it reads this host's CPUs (count, per-CPU load from /proc/stat,
clock from cpufreq's cpuinfo_max_freq or /proc/cpuinfo), memory (/proc/meminfo) and, when
`nvidia-smi` is on PATH, its GPUs, and sends one S6.1 datagram to `--target`. CPU power is
clock × `--efficiency` in effective GHz (MHz / 1000), the unit the daemon's demand uses.
nvidia-smi does not report FLOPS, so each GPU counts `--gpu-tflops` (default 5, the
daemon's DEFAULT_GPU_TFLOPS).

Explicit values (`--cpu-power`, `--load`, `--gpu-count`, …) replace what would be measured,
type by type; with `--once` that is the seed's test script as a command:

    edge-sched report --once --target 127.0.0.1:8001 --node-name test-node-1 \
        --cpu-count 1 --cpu-power 2.5 --load 60 --total-memory 100 --available-memory 80

The agent never stops because the daemon is away: UDP needs no connection, and a send or
name-resolution error is logged (once per kind until it clears) and retried next interval.
The reporter reads no daemon settings: it runs on nodes with only its own command line.
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import socket
import sys
import time
from pathlib import Path

import attrs
import trio

from edge_sched.codecs.node_stats import (
    NVIDIA_SMI_QUERY,
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
from edge_sched.codecs.power_report import MAX_COUNT, encode_host_name, encode_report, truncate_float24
from edge_sched.core.power import ComputeType, HostPower, PowerReport, PowerUnit

log = logging.getLogger("edge_sched.reporter")

FIRST_SAMPLE_S = 0.5  # ticks to measure over before the first report
NVIDIA_SMI_TIMEOUT_S = 5.0
DEFAULT_CPU_MHZ = 2000.0  # when neither cpufreq nor cpuinfo gives a clock


@attrs.frozen
class Manual:
    """Values given on the command line; None means "measure it"."""

    total_memory: int | None = None
    available_memory: int | None = None
    cpu_count: int | None = None
    cpu_power: float | None = None
    cpu_load: int | None = None
    gpu_count: int | None = None
    gpu_tflops: float | None = None
    gpu_memory: float | None = None
    gpu_load: int | None = None
    fpga_count: int | None = None
    fpga_tflops: float | None = None
    fpga_load: int | None = None

    @property
    def cpu_given(self) -> bool:
        return any(v is not None for v in (self.cpu_count, self.cpu_power, self.cpu_load))

    @property
    def gpu_given(self) -> bool:
        return any(v is not None for v in (self.gpu_count, self.gpu_memory, self.gpu_load))

    @property
    def fpga_given(self) -> bool:
        return any(v is not None for v in (self.fpga_count, self.fpga_tflops, self.fpga_load))


@attrs.frozen
class Measured:
    memory: Memory | None = None
    cpu_mhz: dict[int, float] = attrs.field(factory=dict)
    cpu_load: dict[int, int] = attrs.field(factory=dict)
    gpus: tuple[GpuStat, ...] = ()


@attrs.frozen
class ReporterOptions:
    host: str
    port: int
    node_name: str
    interval_s: float = 5.0
    once: bool = False
    efficiency: float = 1.0
    gpu_tflops: float = 5.0
    report_id: int | None = None
    manual: Manual = Manual()


def build_hosts(opts: ReporterOptions, measured: Measured) -> tuple[HostPower, ...]:
    """The report's host entries from measured and explicit values (pure)."""
    manual = opts.manual
    memory = measured.memory or Memory(0, 0)
    total = manual.total_memory if manual.total_memory is not None else memory.total_gib
    available = manual.available_memory if manual.available_memory is not None else memory.available_gib
    available = min(available, total)

    def entry(kind: ComputeType, units: list[PowerUnit]) -> HostPower:
        return HostPower(opts.node_name, kind, total, available, tuple(units[:MAX_COUNT]))

    hosts: list[HostPower] = []
    if manual.cpu_given:
        count = manual.cpu_count if manual.cpu_count is not None else 1
        power = manual.cpu_power if manual.cpu_power is not None else DEFAULT_CPU_MHZ / 1000 * opts.efficiency
        load = manual.cpu_load if manual.cpu_load is not None else 0
        hosts.append(entry(ComputeType.CPU, [PowerUnit(truncate_float24(power), load)] * count))
    else:
        cpus = sorted(set(measured.cpu_load) | set(measured.cpu_mhz))
        fallback_mhz = max(measured.cpu_mhz.values(), default=DEFAULT_CPU_MHZ)
        units = [
            PowerUnit(
                truncate_float24(measured.cpu_mhz.get(cpu, fallback_mhz) / 1000 * opts.efficiency),
                measured.cpu_load.get(cpu, 0),
            )
            for cpu in cpus
        ]
        hosts.append(entry(ComputeType.CPU, units))
    if manual.gpu_given:
        count = manual.gpu_count if manual.gpu_count is not None else 1
        tflops = manual.gpu_tflops if manual.gpu_tflops is not None else opts.gpu_tflops
        unit = PowerUnit(_hundredths(tflops), manual.gpu_load or 0, _hundredths(manual.gpu_memory or 0.0))
        hosts.append(entry(ComputeType.GPU, [unit] * count))
    elif measured.gpus:
        units = [PowerUnit(_hundredths(opts.gpu_tflops), g.load_pct, _hundredths(g.memory_gib)) for g in measured.gpus]
        hosts.append(entry(ComputeType.GPU, units))
    if manual.fpga_given:
        count = manual.fpga_count if manual.fpga_count is not None else 1
        unit = PowerUnit(_hundredths(manual.fpga_tflops or 0.0), manual.fpga_load or 0)
        hosts.append(entry(ComputeType.FPGA, [unit] * count))
    return tuple(hosts)


def _hundredths(value: float) -> float:
    """`value` as the wire carries it: 0..255.99 in hundredths."""
    return min(25599, max(0, round(value * 100))) / 100


# -- measuring -------------------------------------------------------------------------------


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def read_ticks() -> dict[int, CpuTicks]:
    return parse_proc_stat(_read("/proc/stat") or "")


def read_cpu_mhz() -> dict[int, float]:
    mhz = parse_cpuinfo_mhz(_read("/proc/cpuinfo") or "")
    for cpufreq in Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq"):
        value = parse_khz(_read(cpufreq) or "")
        try:
            index = int(cpufreq.parent.parent.name[3:])
        except ValueError:
            continue
        if value is not None:
            mhz[index] = value  # the rated clock, not the momentary one
    return mhz


async def read_gpus() -> tuple[GpuStat, ...]:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return ()
    with trio.move_on_after(NVIDIA_SMI_TIMEOUT_S):
        try:
            done = await trio.run_process([smi, *NVIDIA_SMI_QUERY], capture_stdout=True, capture_stderr=True, check=False)
        except OSError as exc:
            log.warning("nvidia-smi failed: %s", exc)
            return ()
        if done.returncode != 0:
            log.warning("nvidia-smi exited with %d: %s", done.returncode, done.stderr.decode(errors="replace").strip())
            return ()
        return tuple(parse_nvidia_smi(done.stdout.decode(errors="replace")))
    log.warning("nvidia-smi gave no answer within %.0fs", NVIDIA_SMI_TIMEOUT_S)
    return ()


# -- sending ---------------------------------------------------------------------------------


@attrs.define
class Sender:
    host: str
    port: int
    _last_error: str = ""

    async def send(self, data: bytes) -> bool:
        try:
            infos = await trio.socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)
            family, _, _, _, address = infos[0]
            with trio.socket.socket(family, socket.SOCK_DGRAM) as sock:
                await sock.sendto(data, address)
        except OSError as exc:
            message = f"{exc.__class__.__name__}: {exc}"
            if message != self._last_error:  # once per kind of failure, not every interval
                log.warning("cannot send a report to %s:%d: %s; will keep trying", self.host, self.port, message)
            self._last_error = message
            return False
        if self._last_error:
            log.info("reports reach %s:%d again", self.host, self.port)
            self._last_error = ""
        return True


async def run_reporter(opts: ReporterOptions) -> int:
    """Send reports until cancelled (or once); returns the exit code."""
    manual = opts.manual
    report_id = opts.report_id if opts.report_id is not None else int(time.time()) & 0xFFFFFFFF
    sender = Sender(opts.host, opts.port)
    ticks = read_ticks() if not manual.cpu_given else {}
    if ticks:
        await trio.sleep(FIRST_SAMPLE_S)
    next_at = trio.current_time()
    while True:
        measured = Measured()
        if not manual.cpu_given:
            now_ticks = read_ticks()
            measured = attrs.evolve(measured, cpu_mhz=read_cpu_mhz(), cpu_load=cpu_loads(ticks, now_ticks))
            ticks = now_ticks
        if manual.total_memory is None or manual.available_memory is None:
            measured = attrs.evolve(measured, memory=parse_meminfo(_read("/proc/meminfo") or ""))
        if not manual.gpu_given:
            measured = attrs.evolve(measured, gpus=await read_gpus())
        try:
            data = encode_report(PowerReport(report_id, build_hosts(opts, measured)))
        except ValueError as exc:
            log.error("cannot encode a report: %s", exc)
            return 2
        sent = await sender.send(data)
        if opts.once:
            if sent:
                print(f"sent report {report_id} ({len(data)} bytes) to {opts.host}:{opts.port}")
            return 0 if sent else 1
        log.debug("sent report %d (%d bytes)", report_id, len(data))
        report_id = (report_id + 1) & 0xFFFFFFFF
        next_at += opts.interval_s
        now = trio.current_time()
        if next_at < now:  # fell behind (suspend, slow nvidia-smi): do not burst to catch up
            next_at = now + opts.interval_s
        await trio.sleep_until(next_at)


# -- command line ----------------------------------------------------------------------------


def _target(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not sep or not host or not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT (e.g. 127.0.0.1:8001)")
    return host, number


def _positive(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number > 0")
    return value


def _ranged_int(low: int, high: int) -> object:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text!r}: expected {low}..{high}")
        return value

    return parse


def _hundredths_value(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or not 0 <= value <= 255.99:
        raise argparse.ArgumentTypeError(f"{text!r}: expected 0..255.99")
    return value


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", required=True, type=_target, metavar="HOST:PORT",
                        help="the daemon's UDP report listener (UDP_SERVICE_PORT, 8001)")
    parser.add_argument("--interval", type=_positive, default=5.0, metavar="S", help="seconds between reports (default 5)")
    parser.add_argument("--node-name", default=None, metavar="N", help="Kubernetes node name (default: host name)")
    parser.add_argument("--once", action="store_true", help="send one report and exit")
    parser.add_argument("--report-id", type=_ranged_int(0, 0xFFFFFFFF), metavar="N", help="first report id (default: unix time)")
    parser.add_argument("--efficiency", type=_positive, default=1.0, help="CPU power = clock GHz × this (default 1)")
    parser.add_argument("--total-memory", type=_ranged_int(0, 255), metavar="GIB")
    parser.add_argument("--available-memory", type=_ranged_int(0, 255), metavar="GIB")
    parser.add_argument("--cpu-count", type=_ranged_int(0, 255), metavar="N")
    parser.add_argument("--cpu-power", type=_positive, metavar="GHZ", help="effective GHz per CPU")
    parser.add_argument("--load", "--cpu-load", dest="cpu_load", type=_ranged_int(0, 100), metavar="PCT", help="CPU load %%")
    parser.add_argument("--gpu-count", type=_ranged_int(0, 255), metavar="N")
    parser.add_argument("--gpu-tflops", type=_hundredths_value, metavar="TFLOPS",
                        help="TFLOPS per GPU (measured GPUs too; default 5)")
    parser.add_argument("--gpu-memory", type=_hundredths_value, metavar="GIB")
    parser.add_argument("--gpu-load", type=_ranged_int(0, 100), metavar="PCT")
    parser.add_argument("--fpga-count", type=_ranged_int(0, 255), metavar="N")
    parser.add_argument("--fpga-tflops", type=_hundredths_value, metavar="TFLOPS")
    parser.add_argument("--fpga-load", type=_ranged_int(0, 100), metavar="PCT")


def options_from_args(args: argparse.Namespace) -> ReporterOptions:
    """Raises ValueError naming the options that contradict each other."""
    host, port = args.target
    if args.total_memory is not None and args.available_memory is not None and args.available_memory > args.total_memory:
        raise ValueError(f"--available-memory {args.available_memory} is more than --total-memory {args.total_memory}")
    manual = Manual(
        total_memory=args.total_memory,
        available_memory=args.available_memory,
        cpu_count=args.cpu_count,
        cpu_power=args.cpu_power,
        cpu_load=args.cpu_load,
        gpu_count=args.gpu_count,
        gpu_tflops=args.gpu_tflops,
        gpu_memory=args.gpu_memory,
        gpu_load=args.gpu_load,
        fpga_count=args.fpga_count,
        fpga_tflops=args.fpga_tflops,
        fpga_load=args.fpga_load,
    )
    return ReporterOptions(
        host=host,
        port=port,
        node_name=args.node_name or socket.gethostname(),
        interval_s=args.interval,
        once=args.once,
        efficiency=args.efficiency,
        gpu_tflops=args.gpu_tflops if args.gpu_tflops is not None else 5.0,
        report_id=args.report_id,
        manual=manual,
    )


def main_report(args: argparse.Namespace) -> int:
    """Entry point of `edge-sched report` (exit 0, 1 send failed with --once, 2 bad input)."""
    try:
        opts = options_from_args(args)
        encode_host_name(opts.node_name)  # refuse a bad name now, not at every interval
    except ValueError as exc:
        print(f"edge-sched report: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return trio.run(run_reporter, opts)
    except KeyboardInterrupt:
        return 0
