"""Whether the window can open on this Linux machine: Qt's xcb platform plugin and the
shared libraries it needs, and the packages that provide the missing ones.

Qt's own message when the plugin fails names only `libxcb-cursor0`, whatever is missing.
Here the plugin file is found in the installed PySide6 without importing QtGui or
QtWidgets (which is what fails), `ldd` lists the libraries the dynamic loader cannot find
(its list is transitive: the plugin's own libraries and theirs), and each is mapped to the
Debian/Ubuntu and Fedora package that ships it, with the install commands.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PLUGIN = Path("Qt") / "plugins" / "platforms" / "libqxcb.so"
XCB_QPA_LIB = Path("Qt") / "lib" / "libQt6XcbQpa.so.6"
LDD_TIMEOUT_S = 20.0

# so-name -> (Debian/Ubuntu package, Fedora package)
PACKAGES: dict[str, tuple[str, str]] = {
    "libxcb-cursor.so.0": ("libxcb-cursor0", "xcb-util-cursor"),
    "libxcb-icccm.so.4": ("libxcb-icccm4", "xcb-util-wm"),
    "libxcb-keysyms.so.1": ("libxcb-keysyms1", "xcb-util-keysyms"),
    "libxcb-image.so.0": ("libxcb-image0", "xcb-util-image"),
    "libxcb-render-util.so.0": ("libxcb-render-util0", "xcb-util-renderutil"),
    "libxcb-util.so.1": ("libxcb-util1", "xcb-util"),
    "libxcb-randr.so.0": ("libxcb-randr0", "libxcb"),
    "libxcb-shape.so.0": ("libxcb-shape0", "libxcb"),
    "libxcb-xinerama.so.0": ("libxcb-xinerama0", "libxcb"),
    "libxcb-xkb.so.1": ("libxcb-xkb1", "libxcb"),
    "libxcb-xfixes.so.0": ("libxcb-xfixes0", "libxcb"),
    "libxcb-sync.so.1": ("libxcb-sync1", "libxcb"),
    "libxcb-shm.so.0": ("libxcb-shm0", "libxcb"),
    "libxcb-render.so.0": ("libxcb-render0", "libxcb"),
    "libxcb-xinput.so.0": ("libxcb-xinput0", "libxcb"),
    "libxcb-glx.so.0": ("libxcb-glx0", "libxcb"),
    "libxcb.so.1": ("libxcb1", "libxcb"),
    "libxkbcommon-x11.so.0": ("libxkbcommon-x11-0", "libxkbcommon-x11"),
    "libxkbcommon.so.0": ("libxkbcommon0", "libxkbcommon"),
    "libX11-xcb.so.1": ("libx11-xcb1", "libX11-xcb"),
    "libX11.so.6": ("libx11-6", "libX11"),
    "libSM.so.6": ("libsm6", "libSM"),
    "libICE.so.6": ("libice6", "libICE"),
    "libfontconfig.so.1": ("libfontconfig1", "fontconfig"),
    "libfreetype.so.6": ("libfreetype6", "freetype"),
    "libEGL.so.1": ("libegl1", "libglvnd-egl"),
    "libGL.so.1": ("libgl1", "libglvnd-glx"),
    "libOpenGL.so.0": ("libopengl0", "libglvnd-opengl"),
    "libGLX.so.0": ("libglx0", "libglvnd-glx"),
    "libdbus-1.so.3": ("libdbus-1-3", "dbus-libs"),
    "libglib-2.0.so.0": ("libglib2.0-0", "glib2"),
    "libgthread-2.0.so.0": ("libglib2.0-0", "glib2"),
}
"""Every library libqxcb.so (Qt 6.9-6.11) and the Qt libraries it loads link against,
outside Qt itself and glibc."""
README_PACKAGES = tuple(dict.fromkeys(deb for deb, _ in PACKAGES.values()))
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found\s*$")


@dataclass(frozen=True)
class GuiReadiness:
    """What stands between this machine and the window.

    Attributes:
        checked: False where no check ran (not Linux, no `ldd`, no xcb plugin); see `note`.
        plugin: The xcb platform plugin checked, if found.
        missing: The shared libraries the dynamic loader cannot find, in `ldd`'s order.
        note: Why nothing was checked, or a caveat ("no display"); "" if none.
    """

    checked: bool
    plugin: Path | None
    missing: tuple[str, ...] = ()
    note: str = ""

    @property
    def ready(self) -> bool:
        """The plugin's libraries are all there (or nothing could be checked)."""
        return not self.missing

    @property
    def debian_packages(self) -> tuple[str, ...]:
        """The Debian/Ubuntu packages of the missing libraries (known ones)."""
        return _unique(PACKAGES[name][0] for name in self.missing if name in PACKAGES)

    @property
    def fedora_packages(self) -> tuple[str, ...]:
        """The Fedora packages of the missing libraries (known ones)."""
        return _unique(PACKAGES[name][1] for name in self.missing if name in PACKAGES)

    @property
    def unknown(self) -> tuple[str, ...]:
        """Missing libraries this table has no package for."""
        return tuple(name for name in self.missing if name not in PACKAGES)

    def commands(self) -> dict[str, str]:
        """The install commands: {"Debian/Ubuntu": "sudo apt install ...", "Fedora": ...}."""
        found: dict[str, str] = {}
        if self.debian_packages:
            found["Debian/Ubuntu"] = "sudo apt install " + " ".join(self.debian_packages)
        if self.fedora_packages:
            found["Fedora"] = "sudo dnf install " + " ".join(self.fedora_packages)
        return found

    def lines(self) -> list[str]:
        """What to tell a person, one line each."""
        if not self.checked:
            return [f"GUI: not checked ({self.note})"]
        if self.ready:
            return ["GUI: ready" + (f" ({self.note})" if self.note else "")]
        lines = [
            f"GUI: Qt's xcb platform plugin ({self.plugin}) cannot load; missing "
            f"libraries: {', '.join(self.missing)}."
        ]
        lines.extend(
            f"  Install on {system}: {command}" for system, command in self.commands().items()
        )
        if self.unknown:
            lines.append(
                "  Find the package for "
                + ", ".join(self.unknown)
                + " with `apt-file search NAME` or `dnf provides '*/NAME'`."
            )
        if self.note:
            lines.append(f"  Note: {self.note}")
        return lines

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "checked": self.checked,
            "ready": self.ready,
            "plugin": str(self.plugin) if self.plugin else None,
            "missing": list(self.missing),
            "debian_packages": list(self.debian_packages),
            "fedora_packages": list(self.fedora_packages),
            "unknown": list(self.unknown),
            "commands": self.commands(),
            "note": self.note,
        }


def _unique(names: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def pyside_dir() -> Path | None:
    """The installed PySide6 package folder, found without importing it."""
    spec = importlib.util.find_spec("PySide6")
    locations = list(spec.submodule_search_locations or []) if spec else []
    return Path(locations[0]) if locations else None


def xcb_plugin(package_dir: Path | None = None) -> Path | None:
    """Qt's xcb platform plugin inside PySide6 (None if this PySide6 has none)."""
    package_dir = package_dir or pyside_dir()
    plugin = package_dir / PLUGIN if package_dir else None
    return plugin if plugin is not None and plugin.is_file() else None


def missing_libraries(*objects: Path, env: dict[str, str] | None = None) -> tuple[str, ...]:
    """The shared libraries `ldd` reports "not found" for these objects (transitively).

    Raises:
        FileNotFoundError: There is no `ldd` on this machine.
        subprocess.SubprocessError: `ldd` did not finish in time.
    """
    ldd = shutil.which("ldd")
    if ldd is None:
        raise FileNotFoundError("ldd")
    missing: dict[str, None] = {}
    for path in objects:
        result = subprocess.run(
            [ldd, str(path)],
            capture_output=True,
            text=True,
            timeout=LDD_TIMEOUT_S,
            env=env,
            check=False,
        )
        for line in result.stdout.splitlines():
            match = _NOT_FOUND.match(line)
            if match:
                missing[match.group(1)] = None
    return tuple(missing)


def check_gui(
    package_dir: Path | None = None, *, environ: dict[str, str] | None = None
) -> GuiReadiness:
    """Check the xcb platform plugin of the installed PySide6 (or of `package_dir`)."""
    if not sys.platform.startswith("linux"):
        return GuiReadiness(False, None, note="the check is for Linux only")
    plugin = xcb_plugin(package_dir)
    if plugin is None:
        return GuiReadiness(False, None, note="this PySide6 has no xcb platform plugin")
    extra = plugin.parents[2] / XCB_QPA_LIB.relative_to("Qt")
    objects = [plugin] + ([extra] if extra.is_file() else [])
    try:
        missing = missing_libraries(*objects)
    except FileNotFoundError:
        return GuiReadiness(False, plugin, note="`ldd` is not installed")
    except subprocess.SubprocessError as exc:
        return GuiReadiness(False, plugin, note=f"`ldd` failed ({exc})")
    env = environ if environ is not None else dict(os.environ)
    note = "" if env.get("DISPLAY") or env.get("WAYLAND_DISPLAY") else "no display is set"
    return GuiReadiness(True, plugin, missing, note)
