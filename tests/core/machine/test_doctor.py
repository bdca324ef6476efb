"""The doctor's verdict for builds and machines this one is not (reports made by hand),
and for this one."""

from __future__ import annotations

import dataclasses

from app.core.machine.doctor import diagnose, reinstall_command, report_lines
from app.core.machine.hardware import DeviceInfo, MachineReport, machine_report

GiB = 2**30
CUDA = 'CMAKE_ARGS="-DGGML_CUDA=on" pip install --force-reinstall --no-cache-dir llama-cpp-python'
CPU = DeviceInfo("CPU", "AMD Ryzen 7", "CPU", "CPU", 30 * GiB, 32 * GiB)
RTX = DeviceInfo("CUDA0", "NVIDIA GeForce RTX 4070", "GPU", "CUDA", 11 * GiB, 12 * GiB)

CPU_ONLY = MachineReport(
    llama_cpp_python="0.3.36",
    ggml_version="0.25.3",
    ggml_commit="abc",
    backends=("CPU",),
    devices=(CPU,),
    devices_known=True,
    gpu_offload=False,
    mmap=True,
    mlock=True,
    max_devices=16,
    cpu_features=("AVX2",),
    system_info="CPU : AVX2 = 1 |",
    ram_total=32 * GiB,
    ram_available=30 * GiB,
    threads=8,
    platform="Linux x86_64",
)


def test_cpu_only_build_on_an_nvidia_machine_says_what_to_reinstall() -> None:
    report = dataclasses.replace(CPU_ONLY, os_gpus=("NVIDIA GeForce RTX 4070",))

    diagnosis = diagnose(report)

    assert not diagnosis.can_use_gpu
    assert diagnosis.reinstall == CUDA
    assert "CPU-only" in diagnosis.summary and "RTX 4070" in diagnosis.summary
    assert CUDA in "\n".join(report_lines(report, diagnosis))


def test_windows_gets_the_powershell_form() -> None:
    report = dataclasses.replace(CPU_ONLY, platform="Windows AMD64", os_gpus=("NVIDIA A",))

    assert diagnose(report).reinstall == (
        '$env:CMAKE_ARGS = "-DGGML_CUDA=on"; '
        "pip install --force-reinstall --no-cache-dir llama-cpp-python"
    )


def test_cpu_only_build_on_apple_silicon() -> None:
    report = dataclasses.replace(
        CPU_ONLY, platform="Darwin arm64", os_gpus=("Apple Silicon GPU (Metal)",)
    )

    diagnosis = diagnose(report)

    assert diagnosis.reinstall == reinstall_command("-DGGML_METAL=on")
    assert "Metal is on by default" in diagnosis.summary
    assert any("arm64 Python" in note for note in diagnosis.notes)


def test_cpu_only_build_on_an_amd_machine_suggests_vulkan() -> None:
    report = dataclasses.replace(CPU_ONLY, os_gpus=("AMD GPU (rocm-smi found)",))

    assert diagnose(report).reinstall == reinstall_command("-DGGML_VULKAN=on")


def test_cpu_only_machine_needs_no_reinstall() -> None:
    diagnosis = diagnose(CPU_ONLY)

    assert diagnosis.reinstall is None
    assert "models run on the CPU" in diagnosis.summary


def test_gpu_build_that_sees_its_gpu() -> None:
    report = dataclasses.replace(
        CPU_ONLY, gpu_offload=True, devices=(CPU, RTX), backends=("CUDA", "CPU")
    )

    diagnosis = diagnose(report)

    assert diagnosis.can_use_gpu
    assert diagnosis.reinstall is None
    assert "RTX 4070 (CUDA)" in diagnosis.summary
    assert "11.0 GiB free of 12.0 GiB" in "\n".join(report_lines(report, diagnosis))


def test_gpu_build_without_a_gpu_points_at_the_driver() -> None:
    diagnosis = diagnose(dataclasses.replace(CPU_ONLY, gpu_offload=True))

    assert not diagnosis.can_use_gpu
    assert "sees no GPU" in diagnosis.summary
    assert any("driver" in note for note in diagnosis.notes)


def test_unknown_build_is_not_guessed() -> None:
    diagnosis = diagnose(dataclasses.replace(CPU_ONLY, gpu_offload=None, devices_known=False))

    assert not diagnosis.can_use_gpu
    assert "Could not ask" in diagnosis.summary


def test_this_machine() -> None:
    report = machine_report()
    diagnosis = diagnose(report)

    assert not diagnosis.can_use_gpu  # the test machine's build is CPU-only
    assert "GPU offload: no (CPU-only build)" in report_lines(report, diagnosis)
    assert diagnosis.to_dict()["summary"] == diagnosis.summary
