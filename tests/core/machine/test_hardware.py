"""The machine report read from the real (CPU-only) llama.cpp build, and its parsers."""

from __future__ import annotations

import json
from pathlib import Path

import llama_cpp
import pytest

from app.core.machine import hardware
from app.core.machine.hardware import (
    DeviceInfo,
    MachineReport,
    gpu_free_memory,
    gpu_offload_supported,
    machine_report,
    offload_devices,
    parse_system_info,
)

GiB = 2**30


@pytest.fixture(scope="module")
def report() -> MachineReport:
    return machine_report()


def test_the_cpu_only_build_reports_a_cpu_device(report: MachineReport) -> None:
    assert report.devices_known
    cpus = [d for d in report.devices if d.kind == "CPU"]
    assert cpus, report.devices
    assert "CPU" in report.backends
    assert cpus[0].memory_total > 0
    assert cpus[0].description not in ("", "unknown")


def test_the_cpu_only_build_cannot_offload(report: MachineReport) -> None:
    assert report.gpu_offload is False
    assert gpu_offload_supported() is False
    assert report.gpus == ()
    assert gpu_free_memory() == []


def test_build_facts_come_from_llama_cpp(report: MachineReport) -> None:
    assert report.llama_cpp_python == llama_cpp.__version__
    assert report.mmap is bool(llama_cpp.llama_supports_mmap())
    assert report.mlock is bool(llama_cpp.llama_supports_mlock())
    assert report.max_devices == llama_cpp.llama_max_devices()
    assert report.ggml_version != "unknown"
    assert report.system_info.startswith("CPU")


def test_ram_and_threads(report: MachineReport) -> None:
    assert report.ram_total > 256 * 2**20
    assert 0 < report.ram_available <= report.ram_total
    assert report.threads >= 1


def test_cpu_features_are_parsed_from_the_system_info(report: MachineReport) -> None:
    enabled = {
        name for name, value in parse_system_info(report.system_info)["CPU"].items() if value == "1"
    }
    assert set(report.cpu_features) == enabled
    assert report.cpu_features  # every x86-64 and arm64 build reports some


def test_report_serialises_to_json(report: MachineReport) -> None:
    data = json.loads(json.dumps(report.to_dict()))

    assert data["gpu_offload"] is False
    assert data["llama_cpp_python"] == llama_cpp.__version__
    assert any(device["type"] == "CPU" for device in data["devices"])
    assert set(data) >= {"backends", "cpu_features", "ram_total", "ram_available", "mmap"}


def test_unknown_answers_serialise_as_unknown() -> None:
    blank = MachineReport(
        llama_cpp_python="0.0",
        ggml_version="unknown",
        ggml_commit="unknown",
        backends=(),
        devices=(),
        devices_known=False,
        gpu_offload=None,
        mmap=None,
        mlock=None,
        max_devices=None,
        cpu_features=(),
        system_info="unknown",
        ram_total=0,
        ram_available=0,
        threads=1,
        platform="Linux x86_64",
    )
    data = blank.to_dict()

    assert data["devices"] == data["gpu_offload"] == data["mmap"] == "unknown"
    assert data["max_devices"] == "unknown"


def test_missing_ggml_libraries_make_devices_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hardware, "_llama_lib_folder", lambda: Path("/nonexistent"))

    report = machine_report()

    assert not report.devices_known
    assert report.devices == ()
    assert report.to_dict()["devices"] == "unknown"
    assert report.gpu_offload is False  # still answered by llama.cpp itself


def test_system_info_with_several_backends() -> None:
    text = (
        "CUDA : ARCHS = 890 | USE_GRAPHS = 1 | PEER_MAX_BATCH_SIZE = 128 | "
        "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 0 | LLAMAFILE = 1 | "
    )

    assert parse_system_info(text) == {
        "CUDA": {"ARCHS": "890", "USE_GRAPHS": "1", "PEER_MAX_BATCH_SIZE": "128"},
        "CPU": {"SSE3": "1", "AVX2": "1", "AVX512": "0", "LLAMAFILE": "1"},
    }


def _device(name: str, kind: str, free: int = 8 * GiB) -> DeviceInfo:
    return DeviceInfo(name, name, kind, "test", free, free)  # type: ignore[arg-type]


def test_llama_cpp_offloads_to_dedicated_gpus_before_integrated_ones() -> None:
    cpu, igpu = _device("CPU", "CPU"), _device("iGPU0", "IGPU")
    gpu0, gpu1 = _device("CUDA0", "GPU"), _device("CUDA1", "GPU")

    assert offload_devices([cpu, igpu, gpu0, gpu1]) == (gpu0, gpu1)
    assert offload_devices([cpu, igpu]) == (igpu,)
    assert offload_devices([cpu, _device("BLAS", "ACCEL")]) == ()
