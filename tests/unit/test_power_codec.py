"""S6.1 report and S6.3 router wire formats: exact layouts, strict validation (C28)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_sched.codecs import power_report as codec
from edge_sched.core.power import (
    ComputeType,
    ContainerProfile,
    HostPower,
    PowerReport,
    PowerUnit,
    RouterAnswer,
)
from edge_sched.errors import DecodeError


def seed_test_packet() -> bytes:
    """The seed guide's send_test_report(), byte for byte (section 算力度量服务配置)."""
    data = struct.pack("!I", 1)
    data += struct.pack("!B", 1)
    data += "test-node-1".encode().ljust(64, b"\x00")
    data += struct.pack("!BB", 100, 80)
    data += struct.pack("!B", 1)
    data += struct.pack("!B", 1)
    data += struct.pack("!f", 2.5)[:3]
    data += struct.pack("!B", 60)
    return data


def name_bytes(name: str) -> bytes:
    return name.encode().ljust(64, b"\x00")


def gpu_packet(tflops: tuple[int, int] = (5, 5), memory: tuple[int, int] = (16, 0), load: int = 10) -> bytes:
    return (
        struct.pack("!IB", 7, 1) + name_bytes("gpu-node") + bytes((64, 32, 2, 1))
        + bytes((*tflops, *memory, load))
    )


def fpga_packet(tflops: tuple[int, int] = (2, 50), load: int = 0) -> bytes:
    return struct.pack("!IB", 8, 1) + name_bytes("fpga-node") + bytes((8, 8, 3, 1)) + bytes((*tflops, load))


def reason_of(data: bytes) -> str:
    with pytest.raises(DecodeError) as info:
        codec.decode_report(data)
    return info.value.reason


# -- the seed's packet ---------------------------------------------------------------------


def test_seed_test_packet_decodes() -> None:
    report = codec.decode_report(seed_test_packet())
    assert report.report_id == 1
    (host,) = report.hosts
    assert host.name == "test-node-1"
    assert host.type is ComputeType.CPU
    assert (host.total_memory_gib, host.available_memory_gib) == (100, 80)
    (cpu,) = host.units
    assert cpu.power == pytest.approx(2.5, abs=1e-4)
    assert cpu.load_pct == 60
    assert host.available_power == pytest.approx(1.0, abs=1e-4)
    assert len(seed_test_packet()) == 4 + 1 + 64 + 2 + 1 + 1 + 4


def test_seed_test_packet_reencodes_identically() -> None:
    data = seed_test_packet()
    assert codec.encode_report(codec.decode_report(data)) == data


# -- hundredths rule ----------------------------------------------------------------------


def test_hundredths_byte_is_hundredths_not_decimal_text() -> None:
    # The seed read (5, 5) and (5, 50) both as "5.5"; the contract says 5.05 and 5.50.
    five_oh_five = codec.decode_report(gpu_packet(tflops=(5, 5))).hosts[0].units[0]
    five_fifty = codec.decode_report(gpu_packet(tflops=(5, 50))).hosts[0].units[0]
    assert five_oh_five.power == pytest.approx(5.05)
    assert five_fifty.power == pytest.approx(5.50)
    assert codec.encode_hundredths(5.05) == bytes((5, 5))
    assert codec.encode_hundredths(5.5) == bytes((5, 50))


def test_gpu_and_fpga_fields() -> None:
    gpu = codec.decode_report(gpu_packet(tflops=(12, 34), memory=(23, 99), load=95)).hosts[0]
    assert gpu.type is ComputeType.GPU
    assert gpu.units == (PowerUnit(12.34, 95, 23.99),)
    assert gpu.available_power == pytest.approx(12.34 * 0.05)
    fpga = codec.decode_report(fpga_packet()).hosts[0]
    assert fpga.type is ComputeType.FPGA and fpga.units == (PowerUnit(2.5, 0),)


def test_cpu_power_is_float32_without_its_last_byte() -> None:
    # 3.14159 loses its low mantissa byte: the decoded value is the truncated float.
    data = seed_test_packet()[:-4] + struct.pack("!f", 3.14159)[:3] + b"\x32"
    power = codec.decode_report(data).hosts[0].units[0].power
    assert power == struct.unpack("!f", struct.pack("!f", 3.14159)[:3] + b"\x00")[0]
    assert power == pytest.approx(3.14159, rel=1e-4)
    assert codec.truncate_float24(3.14159) == power


# -- every invalid field -------------------------------------------------------------------


def test_every_truncation_is_rejected() -> None:
    for packet in (seed_test_packet(), gpu_packet(), fpga_packet()):
        for cut in range(len(packet)):
            assert reason_of(packet[:cut]) == codec.TRUNCATED, cut


def test_trailing_bytes_rejected() -> None:
    assert reason_of(seed_test_packet() + b"\x00") == codec.TRAILING_BYTES
    assert reason_of(seed_test_packet() + b"\xde\xad\xbe\xef") == codec.TRAILING_BYTES


def test_count_mismatch_rejected_both_ways() -> None:
    packet = bytearray(seed_test_packet())
    count_at = 4 + 1 + 64 + 2 + 1
    packet[count_at] = 2  # claims two CPUs, carries one
    assert reason_of(bytes(packet)) == codec.TRUNCATED
    packet[count_at] = 0  # claims none, carries one
    assert reason_of(bytes(packet)) == codec.TRAILING_BYTES
    hosts = bytearray(seed_test_packet())
    hosts[4] = 2  # two hosts claimed
    assert reason_of(bytes(hosts)) == codec.TRUNCATED


def test_claimed_counts_do_not_drive_allocation() -> None:
    # C28: a header claiming 255 hosts of which none arrived is refused up front.
    with pytest.raises(DecodeError, match="255 host entries: needs 17340 bytes"):
        codec.decode_report(struct.pack("!IB", 1, 255))
    assert reason_of(b"") == codec.TRUNCATED
    assert reason_of(b"\x45") == codec.TRUNCATED


def test_no_hosts_rejected() -> None:
    assert reason_of(struct.pack("!IB", 1, 0)) == codec.NO_HOSTS


def test_unknown_type_rejected() -> None:
    for kind in (0, 4, 255):
        packet = bytearray(seed_test_packet())
        packet[4 + 1 + 64 + 2] = kind
        assert reason_of(bytes(packet)) == codec.UNKNOWN_TYPE


def test_load_over_100_rejected() -> None:
    assert reason_of(seed_test_packet()[:-1] + b"\x65") == codec.INVALID_VALUE  # 101
    assert codec.decode_report(seed_test_packet()[:-1] + b"\x64").hosts[0].units[0].load_pct == 100
    assert reason_of(gpu_packet(load=101)) == codec.INVALID_VALUE
    assert reason_of(fpga_packet(load=200)) == codec.INVALID_VALUE


def test_hundredths_over_99_rejected() -> None:
    assert reason_of(gpu_packet(tflops=(5, 100))) == codec.INVALID_VALUE
    assert reason_of(gpu_packet(memory=(5, 255))) == codec.INVALID_VALUE
    assert reason_of(fpga_packet(tflops=(1, 100))) == codec.INVALID_VALUE


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf"), -1.0])
def test_cpu_power_must_be_finite_and_non_negative(value: float) -> None:
    packet = seed_test_packet()[:-4] + struct.pack("!f", value)[:3] + b"\x10"
    assert reason_of(packet) == codec.INVALID_VALUE


def test_negative_zero_power_reads_as_zero() -> None:
    packet = seed_test_packet()[:-4] + b"\x80\x00\x00\x10"
    assert str(codec.decode_report(packet).hosts[0].units[0].power) == "0.0"


def test_available_memory_above_total_rejected() -> None:
    packet = bytearray(seed_test_packet())
    packet[4 + 1 + 64 + 1] = 101
    assert reason_of(bytes(packet)) == codec.INVALID_VALUE


@pytest.mark.parametrize(
    "raw_name",
    [
        b"",  # empty
        b"\xff\xfenode",  # not UTF-8
        b"\xe4\xb8",  # UTF-8 cut inside a character
        b"node\x00evil",  # NUL inside: padding only at the end
        b"node\nforged log line",  # control characters reach logs
    ],
)
def test_bad_names_rejected(raw_name: bytes) -> None:
    packet = struct.pack("!IB", 1, 1) + raw_name.ljust(64, b"\x00") + seed_test_packet()[69:]
    assert reason_of(packet) == codec.INVALID_NAME


def test_utf8_names_accepted() -> None:
    packet = struct.pack("!IB", 1, 1) + name_bytes("边缘节点-1") + seed_test_packet()[69:]
    assert codec.decode_report(packet).hosts[0].name == "边缘节点-1"
    full = "n" * 64  # exactly 64 bytes, no padding at all
    packet = struct.pack("!IB", 1, 1) + full.encode() + seed_test_packet()[69:]
    assert codec.decode_report(packet).hosts[0].name == full


def test_duplicate_host_and_type_rejected_but_cpu_plus_gpu_accepted() -> None:
    cpu_entry = seed_test_packet()[5:]
    gpu_entry = name_bytes("test-node-1") + bytes((100, 80, 2, 1, 10, 0, 16, 0, 50))
    both = struct.pack("!IB", 3, 2) + cpu_entry + gpu_entry
    report = codec.decode_report(both)
    assert [(h.name, h.type) for h in report.hosts] == [
        ("test-node-1", ComputeType.CPU), ("test-node-1", ComputeType.GPU)
    ]
    twice = struct.pack("!IB", 3, 2) + cpu_entry + cpu_entry
    assert reason_of(twice) == codec.DUPLICATE_HOST


def test_decoder_accepts_any_bytes_like() -> None:
    data = seed_test_packet()
    buffer = bytearray(data + b"junk")
    assert codec.decode_report(memoryview(buffer)[: len(data)]) == codec.decode_report(data)
    assert codec.decode_report(bytearray(data)) == codec.decode_report(data)


@settings(max_examples=400)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_raise_anything_but_decode_error(data: bytes) -> None:
    try:
        codec.decode_report(data)
    except DecodeError as exc:
        assert exc.reason in codec.REPORT_ERROR_REASONS


# -- round trip ----------------------------------------------------------------------------

names = st.text(
    st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=20
).filter(lambda s: 0 < len(s.encode()) <= 64)
loads = st.integers(0, 100)
hundredths = st.builds(lambda i, h: i + h / 100, st.integers(0, 255), st.integers(0, 99))
float24 = st.floats(0, 1e6, allow_nan=False).map(codec.truncate_float24)


@st.composite
def host_entries(draw: st.DrawFn, name: str, kind: ComputeType) -> HostPower:
    total = draw(st.integers(0, 255))
    available = draw(st.integers(0, total))
    count = draw(st.integers(0, 8))
    if kind is ComputeType.CPU:
        units = [PowerUnit(draw(float24), draw(loads)) for _ in range(count)]
    elif kind is ComputeType.GPU:
        units = [PowerUnit(draw(hundredths), draw(loads), draw(hundredths)) for _ in range(count)]
    else:
        units = [PowerUnit(draw(hundredths), draw(loads)) for _ in range(count)]
    return HostPower(name, kind, total, available, tuple(units))


@st.composite
def reports(draw: st.DrawFn) -> PowerReport:
    keys = draw(
        st.lists(st.tuples(names, st.sampled_from(list(ComputeType))), min_size=1, max_size=6, unique=True)
    )
    hosts = tuple(draw(host_entries(name, kind)) for name, kind in keys)
    return PowerReport(draw(st.integers(0, 2**32 - 1)), hosts)


@given(reports())
def test_round_trip(report: PowerReport) -> None:
    data = codec.encode_report(report)
    assert len(data) == codec.report_size(report.hosts)
    decoded = codec.decode_report(data)
    assert decoded.report_id == report.report_id
    assert len(decoded.hosts) == len(report.hosts)
    for got, want in zip(decoded.hosts, report.hosts, strict=True):
        assert (got.name, got.type, got.total_memory_gib, got.available_memory_gib) == (
            want.name, want.type, want.total_memory_gib, want.available_memory_gib
        )
        for u, w in zip(got.units, want.units, strict=True):
            assert u.power == pytest.approx(w.power, abs=1e-9)
            assert u.load_pct == w.load_pct
            if want.type is ComputeType.GPU:
                assert u.memory_gib == pytest.approx(w.memory_gib, abs=1e-9)
    # Decoding is exact: a decoded report encodes back to the very same bytes.
    assert codec.encode_report(decoded) == data


@settings(max_examples=50)
@given(reports(), st.data())
def test_every_truncation_of_any_valid_report_is_rejected(report: PowerReport, data: st.DataObject) -> None:
    packet = codec.encode_report(report)
    cut = data.draw(st.integers(0, len(packet) - 1))
    with pytest.raises(DecodeError) as info:
        codec.decode_report(packet[:cut])
    assert info.value.reason == codec.TRUNCATED


def test_encoder_refuses_what_the_wire_cannot_carry() -> None:
    host = HostPower("n", ComputeType.CPU, 8, 4, (PowerUnit(2.0, 50),))
    with pytest.raises(ValueError, match="1..64 UTF-8 bytes"):
        codec.encode_report(PowerReport(1, (attrs_evolve(host, name="x" * 65),)))
    with pytest.raises(ValueError, match="load"):
        codec.encode_report(PowerReport(1, (attrs_evolve(host, units=(PowerUnit(2.0, 101),)),)))
    with pytest.raises(ValueError, match="outside 0..255.99"):
        codec.encode_hundredths(256.0)
    with pytest.raises(ValueError, match="available_memory"):
        codec.encode_report(PowerReport(1, (attrs_evolve(host, available_memory_gib=9),)))
    with pytest.raises(ValueError, match="1..255 host entries"):
        codec.encode_report(PowerReport(1, ()))


def attrs_evolve(host: HostPower, **changes: object) -> HostPower:
    import attrs

    return attrs.evolve(host, **changes)  # type: ignore[arg-type]


# -- router ----------------------------------------------------------------------------------


def test_router_request_layout_and_clamping() -> None:
    data, warnings = codec.encode_router_request(
        [ContainerProfile(2, 4, 25, 1, 0), ContainerProfile(2, 300, -5, 0, 1000)]
    )
    assert data == bytes((2, 2, 4, 25, 1, 0, 2, 255, 0, 0, 255))
    assert warnings == (
        "container 1 cpu_cores 300 clamped to 255",
        "container 1 gpu_cuda_hundreds -5 clamped to 0",
        "container 1 fpga_kilo_logic_units 1000 clamped to 255",
    )
    assert codec.decode_router_request(data)[1] == ContainerProfile(2, 255, 0, 0, 255)
    with pytest.raises(ValueError, match="1..255 containers"):
        codec.encode_router_request([])


def test_router_response_layout() -> None:
    data = bytes((2, 0x01, 0x00, 5, 5, 0, 0, 0, 8, 0, 0, 2, 50))
    answers = codec.decode_router_response(data, 2)
    assert answers == (RouterAnswer(256, 5.05, 0.0), RouterAnswer(8, 0.0, 2.5))
    assert codec.encode_router_response(answers) == data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", codec.LENGTH_MISMATCH),
        (bytes((1,)), codec.LENGTH_MISMATCH),
        (bytes((1, 0, 8, 5, 5, 0)), codec.LENGTH_MISMATCH),  # one byte short
        (bytes((1, 0, 8, 5, 5, 0, 0, 0)), codec.LENGTH_MISMATCH),  # one byte long
        (bytes((2, 0, 8, 5, 5, 0, 0)), codec.COUNT_MISMATCH),  # N differs from the request's
        (bytes((1, 0, 8, 5, 100, 0, 0)), codec.INVALID_VALUE),  # hundredths 100
    ],
)
def test_router_response_invalid(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as info:
        codec.decode_router_response(data, 1)
    assert info.value.reason == reason
