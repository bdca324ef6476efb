"""What `hearth doctor` (and the "About this machine" panel) tells the person: whether
this llama.cpp build can use the GPU the machine has, and what to reinstall if not; and
whether the window can open (`gui_readiness`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.machine.gui_readiness import GuiReadiness
from app.core.machine.hardware import MachineReport
from app.core.units import format_bytes

_PIP = "pip install --force-reinstall --no-cache-dir llama-cpp-python"


@dataclass(frozen=True)
class Diagnosis:
    """The verdict on this build and machine.

    `reinstall` is the exact command that would give a GPU build, or None when none would
    help; `notes` are further hints, one sentence each.
    """

    can_use_gpu: bool
    summary: str
    reinstall: str | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "can_use_gpu": self.can_use_gpu,
            "summary": self.summary,
            "reinstall": self.reinstall,
            "notes": list(self.notes),
        }


def reinstall_command(cmake_flag: str, windows: bool = False) -> str:
    """The pip command that rebuilds llama-cpp-python with one CMake flag set."""
    if windows:
        return f'$env:CMAKE_ARGS = "{cmake_flag}"; {_PIP}'
    return f'CMAKE_ARGS="{cmake_flag}" {_PIP}'


def diagnose(report: MachineReport) -> Diagnosis:
    """Say whether this build can use the GPU it sees, and what to reinstall if not."""
    gpus = report.gpus
    windows = report.platform.startswith("Windows")
    if report.gpu_offload and gpus:
        names = ", ".join(f"{gpu.description or gpu.name} ({gpu.backend})" for gpu in gpus)
        return Diagnosis(True, f"This build can offload layers to the GPU: {names}.")
    if report.gpu_offload:
        return Diagnosis(
            False,
            "This build supports GPU offload, but llama.cpp sees no GPU.",
            notes=(
                "Check that the GPU driver is installed and the GPU is not in use "
                "by another program.",
            ),
        )
    if report.gpu_offload is None:
        return Diagnosis(False, "Could not ask this llama.cpp build whether it can use a GPU.")
    os_gpus = report.os_gpus
    nvidia = [gpu for gpu in os_gpus if "NVIDIA" in gpu]
    apple = [gpu for gpu in os_gpus if "Apple" in gpu]
    amd = [gpu for gpu in os_gpus if "AMD" in gpu]
    if nvidia:
        return Diagnosis(
            False,
            f"This llama.cpp build is CPU-only, but the system has {', '.join(nvidia)}: "
            "reinstall llama-cpp-python with CUDA to use it.",
            reinstall_command("-DGGML_CUDA=on", windows),
            (
                "The build needs the CUDA Toolkit (nvcc) and a C++ compiler; it takes several "
                "minutes.",
            ),
        )
    if apple:
        return Diagnosis(
            False,
            "This llama.cpp build is CPU-only, but this Mac has an Apple Silicon GPU: "
            "reinstall llama-cpp-python (Metal is on by default on Apple Silicon).",
            reinstall_command("-DGGML_METAL=on"),
            ("Use a native arm64 Python: an x86_64 Python under Rosetta builds without Metal.",),
        )
    if amd:
        return Diagnosis(
            False,
            f"This llama.cpp build is CPU-only, but the system has an {amd[0]}: "
            "reinstall llama-cpp-python with Vulkan (or ROCm: -DGGML_HIP=on) to use it.",
            reinstall_command("-DGGML_VULKAN=on", windows),
            ("The Vulkan build needs the Vulkan SDK.",),
        )
    return Diagnosis(
        False,
        "This llama.cpp build is CPU-only and the system shows no NVIDIA or Apple GPU: "
        "models run on the CPU.",
        notes=(
            "For another GPU with a Vulkan driver (AMD, Intel), reinstall with "
            f"Vulkan: {reinstall_command('-DGGML_VULKAN=on', windows)}",
        ),
    )


def report_lines(
    report: MachineReport, diagnosis: Diagnosis, gui: GuiReadiness | None = None
) -> list[str]:
    """The machine report, the verdict and (if given) the GUI's readiness as plain text."""

    def yes_no(value: bool | None) -> str:
        return "unknown" if value is None else "yes" if value else "no"

    lines = [
        f"llama-cpp-python {report.llama_cpp_python} "
        f"(ggml {report.ggml_version}, commit {report.ggml_commit})",
        f"Platform: {report.platform}",
        f"Backends: {', '.join(report.backends) or 'unknown'}",
        "Devices:" if report.devices_known else "Devices: unknown (ggml could not be asked)",
    ]
    for device in report.devices:
        memory = ""
        if device.memory_total:
            memory = (
                f", {format_bytes(device.memory_free)} free of {format_bytes(device.memory_total)}"
            )
        lines.append(f"  {device.name} [{device.kind}] {device.description}{memory}")
    offload = yes_no(report.gpu_offload)
    if report.gpu_offload is False:
        offload += " (CPU-only build)"
    lines += [
        f"GPU offload: {offload}",
        f"mmap: {yes_no(report.mmap)}, mlock: {yes_no(report.mlock)}",
        f"CPU features: {' '.join(report.cpu_features) or 'unknown'}",
        f"RAM: {format_bytes(report.ram_available)} free of {format_bytes(report.ram_total)}; "
        f"{report.threads} threads by default",
        f"GPUs the system shows: {', '.join(report.os_gpus) or 'none found'}",
        "",
        diagnosis.summary,
    ]
    if diagnosis.reinstall:
        lines += ["Reinstall with:", f"  {diagnosis.reinstall}"]
    lines += list(diagnosis.notes)
    if gui is not None:
        lines += ["", *gui.lines()]
    return lines
