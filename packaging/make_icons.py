"""Render resources/icons/hailstone.svg into the icons the installers need.

    python packaging/make_icons.py OUT_DIR

writes OUT_DIR/hailstone.png (512 px), OUT_DIR/hailstone.ico (Windows: PNG
frames of 16..256 px) and OUT_DIR/hailstone.icns (macOS: PNG frames of 16..1024
px). It uses Qt's own SVG renderer (PySide6 is a dependency anyway), so no
Pillow or ImageMagick is needed; the .ico and .icns containers are written by
hand (both may hold PNG data as is). The PyInstaller spec runs it when the
icons are missing.
"""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "resources" / "icons" / "hailstone.svg"

ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
# icns element types that hold PNG data, by pixel size (retina variants reuse sizes).
ICNS_TYPES = (
    (b"icp4", 16),
    (b"icp5", 32),
    (b"ic11", 32),
    (b"icp6", 64),
    (b"ic12", 64),
    (b"ic07", 128),
    (b"ic08", 256),
    (b"ic13", 256),
    (b"ic09", 512),
    (b"ic14", 512),
    (b"ic10", 1024),
)


def render_png(svg: Path, size: int) -> bytes:
    """The SVG rendered into a size x size PNG with a transparent background."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise ValueError(f"not a valid SVG: {svg}")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "PNG"):
        raise RuntimeError("PNG encoding failed")
    buffer.close()
    return bytes(data.data())


def ico_bytes(frames: dict[int, bytes]) -> bytes:
    """An .ico file whose entries are PNG images (Windows Vista and later)."""
    sizes = sorted(frames)
    header = struct.pack("<HHH", 0, 1, len(sizes))
    offset = len(header) + 16 * len(sizes)
    entries, blobs = b"", b""
    for size in sizes:
        png = frames[size]
        dim = 0 if size >= 256 else size  # 0 means 256
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(png), offset)
        blobs += png
        offset += len(png)
    return header + entries + blobs


def icns_bytes(frames: dict[int, bytes]) -> bytes:
    """An .icns file whose elements are PNG images (macOS 10.7 and later)."""
    body = b""
    for kind, size in ICNS_TYPES:
        png = frames[size]
        body += kind + struct.pack(">I", 8 + len(png)) + png
    return b"icns" + struct.pack(">I", 8 + len(body)) + body


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: make_icons.py OUT_DIR", file=sys.stderr)
        return 2
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(["make_icons"])  # noqa: F841
    sizes = sorted(set(ICO_SIZES) | {size for _, size in ICNS_TYPES})
    frames = {size: render_png(SOURCE, size) for size in sizes}
    (out / "hailstone.png").write_bytes(frames[512])
    (out / "hailstone.ico").write_bytes(ico_bytes({s: frames[s] for s in ICO_SIZES}))
    (out / "hailstone.icns").write_bytes(icns_bytes(frames))
    print(f"icons written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
