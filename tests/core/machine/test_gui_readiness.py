"""GUI readiness with real shared objects: the installed PySide6's xcb plugin, and tiny
libraries built here with the C compiler, linked against a library that is then removed,
so `ldd` really reports it "not found"."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.machine.gui_readiness import (
    PACKAGES,
    PLUGIN,
    README_PACKAGES,
    GuiReadiness,
    check_gui,
    missing_libraries,
    pyside_dir,
    xcb_plugin,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ldd is Linux's")
needs_cc = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")


def _build(folder: Path, soname: str, *, links: list[str] = (), name: str | None = None) -> Path:  # type: ignore[assignment]
    """Compile a one-function shared object named `soname` (linking `links` from `folder`)."""
    source = folder / f"{soname}.c"
    source.write_text(f"int f_{abs(hash(soname))}(void) {{ return 1; }}\n", encoding="utf-8")
    output = folder / (name or soname)
    libs = [f"-l:{lib}" for lib in links]
    subprocess.run(
        ["cc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(output), str(source)]
        + ([f"-L{folder}", f"-Wl,-rpath,{folder}", "-Wl,--no-as-needed"] if links else [])
        + libs,
        check=True,
        capture_output=True,
    )
    return output


def _fake_pyside(folder: Path, plugin: Path) -> Path:
    package = folder / "PySide6"
    target = package / PLUGIN
    target.parent.mkdir(parents=True)
    shutil.copy(plugin, target)
    return package


@linux_only
def test_the_installed_plugin_is_found_and_checked() -> None:
    package = pyside_dir()
    assert package is not None and (package / "__init__.py").is_file()
    plugin = xcb_plugin()
    assert plugin is not None and plugin.name == "libqxcb.so"
    result = check_gui(environ={"DISPLAY": ":0"})
    assert result.checked and result.plugin == plugin and result.note == ""
    assert set(missing_libraries(plugin)) <= set(result.missing)
    assert result.ready == (not result.missing)
    for name in result.missing:
        assert name in PACKAGES, f"map {name} to its packages"
    assert "GUI: ready" in result.lines()[0] or "cannot load" in result.lines()[0]


def _system_has(*sonames: str) -> bool:
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True).stdout
    except OSError:
        return True
    return any(soname in listing for soname in sonames)


@linux_only
@needs_cc
@pytest.mark.skipif(
    _system_has("libxcb-icccm.so.4", "libxcb-keysyms.so.1"),
    reason="this system has the real libraries, so removing the copies hides nothing",
)
def test_a_removed_library_is_named_with_its_packages(tmp_path: Path) -> None:
    # Two real libraries with the sonames of libxcb-icccm4 and libxcb-keysyms1, a plugin
    # linked against both, then both removed: ldd must report them, as on a minimal Linux.
    icccm = _build(tmp_path, "libxcb-icccm.so.4")
    keysyms = _build(tmp_path, "libxcb-keysyms.so.1")
    plugin = _build(tmp_path, "libqxcb.so", links=[icccm.name, keysyms.name])
    assert missing_libraries(plugin) == ()
    icccm.unlink()
    keysyms.unlink()
    assert missing_libraries(plugin) == ("libxcb-icccm.so.4", "libxcb-keysyms.so.1")

    result = check_gui(_fake_pyside(tmp_path / "site", plugin), environ={})
    assert result.checked and not result.ready
    assert result.missing == ("libxcb-icccm.so.4", "libxcb-keysyms.so.1")
    assert result.commands() == {
        "Debian/Ubuntu": "sudo apt install libxcb-icccm4 libxcb-keysyms1",
        "Fedora": "sudo dnf install xcb-util-wm xcb-util-keysyms",
    }
    text = "\n".join(result.lines())
    assert "missing libraries: libxcb-icccm.so.4, libxcb-keysyms.so.1" in text
    assert "no display is set" in text
    assert result.to_dict()["debian_packages"] == ["libxcb-icccm4", "libxcb-keysyms1"]


@linux_only
@needs_cc
def test_an_unknown_library_gets_a_way_to_find_its_package(tmp_path: Path) -> None:
    gone = _build(tmp_path, "libhearth-gone.so.7")
    kept = _build(tmp_path, "libhearth-kept.so.1")
    plugin = _build(tmp_path, "libqxcb.so", links=[gone.name, kept.name])
    assert missing_libraries(plugin) == ()
    gone.unlink()
    assert missing_libraries(plugin) == ("libhearth-gone.so.7",)
    result = check_gui(_fake_pyside(tmp_path / "site", plugin), environ={"DISPLAY": ":1"})
    assert result.checked and not result.ready and result.note == ""
    assert result.unknown == ("libhearth-gone.so.7",) and result.commands() == {}
    assert "apt-file search" in "\n".join(result.lines())


def test_missing_xcb_libraries_map_to_both_families_packages() -> None:
    result = GuiReadiness(
        True,
        Path("libqxcb.so"),
        ("libxcb-icccm.so.4", "libxcb-randr.so.0", "libxcb-shape.so.0", "libhearth.so.1"),
    )
    assert result.debian_packages == ("libxcb-icccm4", "libxcb-randr0", "libxcb-shape0")
    assert result.fedora_packages == ("xcb-util-wm", "libxcb")  # one package, said once
    assert result.unknown == ("libhearth.so.1",)


def test_no_plugin_is_not_a_verdict(tmp_path: Path) -> None:
    result = check_gui(tmp_path / "PySide6")
    assert not result.checked and result.ready
    assert result.lines()[0].startswith("GUI: not checked")


def test_the_readme_names_every_package() -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    for package in README_PACKAGES[:10]:
        assert package in readme, package
