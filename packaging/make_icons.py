#!/usr/bin/env python3
"""Render Hearth's app icons from resources/hearth.svg.

Writes resources/icons/hearth-<size>.png for every size in SIZES (rendered by QtSvg at
that exact size, so the small ones stay crisp), hearth.ico (Windows: 16-256) and
hearth.icns (macOS: 16-1024) assembled from those PNGs with Pillow.

Run it after editing the SVG:  .venv/bin/python packaging/make_icons.py
Needs PySide6 (QtSvg ships in PySide6-Essentials) and Pillow (`pip install ".[packaging]"`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SVG = REPO / "resources" / "hearth.svg"
ICONS = REPO / "resources" / "icons"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512, 1024)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)


def png_name(size: int) -> str:
    """File name of the PNG of one size."""
    return f"hearth-{size}.png"


def render_pngs(svg: Path, out_dir: Path) -> list[Path]:
    """Render the SVG to one PNG per size in SIZES; return their paths."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"make_icons: {svg} is not an SVG that QtSvg can render")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32_Premultiplied)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        renderer.render(painter)
        painter.end()
        path = out_dir / png_name(size)
        if not image.convertToFormat(QImage.Format.Format_ARGB32).save(str(path), "PNG"):
            raise SystemExit(f"make_icons: could not write {path}")
        written.append(path)
    return written


def write_ico_icns(out_dir: Path) -> tuple[Path, Path]:
    """Assemble hearth.ico and hearth.icns from the rendered PNGs."""
    from PIL import Image

    images = {size: Image.open(out_dir / png_name(size)).convert("RGBA") for size in SIZES}
    ico = out_dir / "hearth.ico"
    largest_ico = images[max(ICO_SIZES)]
    largest_ico.save(
        ico,
        format="ICO",
        sizes=[(s, s) for s in ICO_SIZES],
        append_images=[images[s] for s in ICO_SIZES if s != max(ICO_SIZES)],
    )
    icns = out_dir / "hearth.icns"
    images[1024].save(
        icns, format="ICNS", append_images=[images[s] for s in ICNS_SIZES if s != 1024]
    )
    return ico, icns


def main() -> int:
    """Render every icon file and list what was written."""
    pngs = render_pngs(SVG, ICONS)
    ico, icns = write_ico_icns(ICONS)
    for path in [*pngs, ico, icns]:
        print(f"{path.relative_to(REPO)}  {path.stat().st_size:>8} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
