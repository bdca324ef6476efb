"""Fast checks of what the bundles are made of (icons, desktop entry, spec); no build here.

The bundle itself is built and run by `packaging/smoke` (minutes; not part of this suite).
"""

from __future__ import annotations

import ast
import configparser
import os
import plistlib
import shutil
import struct
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
RESOURCES = REPO / "resources"
ICONS = RESOURCES / "icons"
PACKAGING = REPO / "packaging"
PNG_SIZES = (16, 24, 32, 48, 64, 128, 256, 512, 1024)
ICO_SIZES = {16, 24, 32, 48, 64, 128, 256}
ICNS_SIZES = {16, 32, 64, 128, 256, 512, 1024}


def test_make_icons_and_the_spec_agree_on_the_sizes() -> None:
    sys.path.insert(0, str(PACKAGING))
    try:
        import make_icons
    finally:
        sys.path.remove(str(PACKAGING))
    assert make_icons.SIZES == PNG_SIZES
    assert set(make_icons.ICO_SIZES) == ICO_SIZES
    assert set(make_icons.ICNS_SIZES) == ICNS_SIZES


@pytest.mark.parametrize("size", PNG_SIZES)
def test_every_png_size_exists_and_qt_reads_it(size: int, qapp: Any) -> None:
    from PySide6.QtGui import QImage

    path = ICONS / f"hearth-{size}.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = QImage(str(path))
    assert not image.isNull()
    assert (image.width(), image.height()) == (size, size)
    assert image.hasAlphaChannel()
    # transparent corners, an opaque middle: a real icon, not a blank or a full square
    assert image.pixelColor(0, 0).alpha() == 0
    assert image.pixelColor(size // 2, size // 2).alpha() == 255


def test_the_ico_holds_every_windows_size() -> None:
    data = (ICONS / "hearth.ico").read_bytes()
    reserved, kind, count = struct.unpack_from("<HHH", data)
    assert (reserved, kind) == (0, 1)
    sizes = {(data[6 + 16 * i] or 256) for i in range(count)}
    assert sizes == ICO_SIZES


def test_the_icns_holds_every_macos_size() -> None:
    data = (ICONS / "hearth.icns").read_bytes()
    assert data[:4] == b"icns"
    assert struct.unpack(">I", data[4:8])[0] == len(data)
    types_found = set()
    offset = 8
    while offset < len(data):
        kind, length = data[offset : offset + 4], struct.unpack(">I", data[offset + 4 : offset + 8])
        types_found.add(kind)
        offset += length[0]
    # ic10 = 1024 (512@2x), ic09 = 512, ic08 = 256, ic07 = 128, ic12 = 64 (32@2x), ic11 = 32
    assert {b"ic07", b"ic08", b"ic09", b"ic10", b"ic11", b"ic12"} <= types_found


def test_pillow_reads_the_ico_and_icns() -> None:
    image_module = pytest.importorskip("PIL.Image")
    with image_module.open(ICONS / "hearth.ico") as ico:
        assert {s[0] for s in ico.info["sizes"]} == ICO_SIZES
    with image_module.open(ICONS / "hearth.icns") as icns:
        icns.load()
        assert icns.size == (1024, 1024)


def test_qt_reads_the_ico_and_the_svg(qapp: Any) -> None:
    from PySide6.QtGui import QImage
    from PySide6.QtSvg import QSvgRenderer

    assert not QImage(str(ICONS / "hearth.ico")).isNull()
    renderer = QSvgRenderer(str(RESOURCES / "hearth.svg"))
    assert renderer.isValid()
    assert renderer.defaultSize().width() == renderer.defaultSize().height() == 1024


def desktop_entry() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(RESOURCES / "hearth.desktop", encoding="utf-8")
    return parser["Desktop Entry"]


def test_the_desktop_entry_has_what_menus_need() -> None:
    entry = desktop_entry()
    assert entry["Type"] == "Application"
    assert entry["Name"] == "Hearth"
    assert entry["Exec"].split()[0] == "hearth"
    assert entry["Icon"] == "hearth"
    assert entry["Categories"].endswith(";")
    assert entry["Terminal"] == "false"
    assert entry["StartupWMClass"] == "Hearth"  # Qt's WM_CLASS is the application name


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="no desktop-file-utils")
def test_the_desktop_entry_passes_desktop_file_validate() -> None:
    result = subprocess.run(
        ["desktop-file-validate", str(RESOURCES / "hearth.desktop")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_data_files_finds_the_icons_and_the_desktop_entry() -> None:
    from app.core.data_files import resource_file

    for name in ("hearth.svg", "hearth.desktop", "icons/hearth-256.png", "icons/hearth.ico"):
        assert resource_file(name).is_file(), name


def test_the_installed_package_ships_the_icons() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = project["tool"]["setuptools"]["package-data"]["app.resources"]
    assert "icons/*" in patterns and "*.desktop" in patterns and "*.svg" in patterns
    extra = project["project"]["optional-dependencies"]["packaging"]
    assert any(d.startswith("pyinstaller") for d in extra)
    assert any(d.startswith("pillow") for d in extra)


class FakeAnalysis:
    """Stands in for PyInstaller's Analysis: keeps what the spec asks for."""

    def __init__(self, scripts: list[str], **kwargs: Any) -> None:
        self.entry = scripts
        self.kwargs = kwargs
        self.binaries: list[tuple[str, str, str]] = []
        self.datas: list[tuple[str, str, str]] = []
        self.pure: list[Any] = []
        self.scripts: list[Any] = []


def run_spec(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, Any]:
    """Execute packaging/hearth.spec with PyInstaller's building blocks faked."""
    hooks = types.ModuleType("PyInstaller.utils.hooks")
    hooks.collect_submodules = lambda package: [f"{package}.cli.self_test"]  # type: ignore[attr-defined]
    hooks.copy_metadata = lambda dist: []  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "PyInstaller", types.ModuleType("PyInstaller"))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils", types.ModuleType("PyInstaller.utils"))
    monkeypatch.setitem(sys.modules, "PyInstaller.utils.hooks", hooks)
    calls: dict[str, list[Any]] = {"EXE": [], "COLLECT": []}
    namespace: dict[str, Any] = {
        "__name__": "__main__",
        "SPECPATH": str(PACKAGING),
        "workpath": str(tmp_path),
        "Analysis": FakeAnalysis,
        "PYZ": lambda pure: "pyz",
        "EXE": lambda *a, **k: calls["EXE"].append(k) or k["name"],
        "COLLECT": lambda *a, **k: calls["COLLECT"].append((a, k)),
        "BUNDLE": lambda *a, **k: None,
    }
    spec = PACKAGING / "hearth.spec"
    exec(compile(spec.read_text(encoding="utf-8"), str(spec), "exec"), namespace)
    namespace["_calls"] = calls
    return namespace


def test_the_spec_collects_every_resource_and_the_llama_libraries(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    spec = run_spec(monkeypatch, tmp_path)
    analysis: FakeAnalysis = spec["a"]

    collected = {(Path(src).resolve(), dest) for src, dest in analysis.kwargs["datas"]}
    for path in [RESOURCES / "hearth.svg", RESOURCES / "hearth.desktop", *ICONS.iterdir()]:
        dest = "app/resources/icons" if path.parent == ICONS else "app/resources"
        assert (path.resolve(), dest) in collected, path
    assert ((REPO / "models" / "catalog.json").resolve(), "app/catalog") in collected
    assert not any("screenshots" in str(src) for src, _ in collected)

    libraries = {Path(src).name for src, dest in analysis.kwargs["binaries"]}
    assert any(name.startswith(("libllama", "llama")) for name in libraries)
    assert any("ggml-cpu" in name for name in libraries)
    assert not any("mtmd" in name for name in libraries)

    assert analysis.entry == [str(PACKAGING / "bundle_entry.py")]
    assert "app.cli.self_test" in analysis.kwargs["hiddenimports"]
    for unwanted in ("tkinter", "pytest", "mypy", "ruff", "importlinter", "PySide6.QtQml"):
        assert unwanted in analysis.kwargs["excludes"]
    # One `hearth` for the GUI and the CLI; Windows adds a console twin.
    names = [exe["name"] for exe in spec["_calls"]["EXE"]]
    assert names == (["hearth", "hearth-cli"] if sys.platform == "win32" else ["hearth"])


def test_the_spec_keeps_only_the_qt_plugins_the_app_uses(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keep = run_spec(monkeypatch, tmp_path)["keep"]
    plugins = "PySide6/Qt/plugins"
    for wanted in (
        "platforms/libqoffscreen.so",
        "platforms/libqxcb.so",
        "platforms/libqwayland.so",
        "platforms/qwindows.dll",
        "platforms/libqcocoa.dylib",
        "imageformats/libqsvg.so",
        "iconengines/libqsvgicon.so",
        "styles/qmodernwindowsstyle.dll",
        "platforminputcontexts/libibusplatforminputcontextplugin.so",
    ):
        assert keep(f"{plugins}/{wanted}"), wanted
    for unwanted in (
        "platforms/libqvnc.so",
        "platforms/libqeglfs.so",
        "imageformats/libqpdf.so",
        "sqldrivers/libqsqlite.so",
        "platformthemes/libqgtk3.so",
        "tls/libqopensslbackend.so",
        "qmltooling/libqmldbg_tcp.so",
    ):
        assert not keep(f"{plugins}/{unwanted}"), unwanted
    assert keep("PySide6/Qt/lib/libQt6Widgets.so.6")
    assert not keep("PySide6/Qt/lib/libQt6Pdf.so.6")
    assert not keep("PySide6/Qt/translations/qtbase_de.qm")


@pytest.mark.parametrize("entry", ["packaging/bundle_entry.py", "app/__main__.py"])
def test_freeze_support_runs_before_anything_else(entry: str) -> None:
    tree = ast.parse((REPO / entry).read_text(encoding="utf-8"))
    statements = [ast.unparse(node) for node in tree.body if not _is_docstring(node)]
    assert statements[:2] == ["import multiprocessing", "multiprocessing.freeze_support()"]
    assert "main" in statements[-1]  # and the app runs after it


def _is_docstring(node: ast.stmt) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)


@pytest.mark.parametrize("script", ["build", "smoke", "make_icons.py"])
def test_the_packaging_scripts_are_executable_python(script: str) -> None:
    path = PACKAGING / script
    assert os.access(path, os.X_OK), f"{path} is not executable"
    assert path.read_text(encoding="utf-8").startswith("#!/usr/bin/env python3\n")
    ast.parse(path.read_text(encoding="utf-8"))


def test_the_macos_info_plist_template_is_complete() -> None:
    info = plistlib.loads(
        (PACKAGING / "macos" / "Info.plist").read_bytes().replace(b"@VERSION@", b"1.2.3")
    )
    assert info["CFBundleName"] == "Hearth"
    assert info["CFBundleShortVersionString"] == "1.2.3"
    assert info["CFBundleIdentifier"].count(".") >= 2
    assert info["NSHighResolutionCapable"] is True
    assert info["LSMinimumSystemVersion"]
    plistlib.loads((PACKAGING / "macos" / "entitlements.plist").read_bytes())


def test_the_windows_version_resource_template_is_valid_python() -> None:
    text = (PACKAGING / "windows" / "version_info.txt").read_text(encoding="utf-8")
    text = text.replace("@VERSION_TUPLE@", "0, 1, 0, 0").replace("@VERSION@", "0.1.0")
    ast.parse(text, mode="eval")
