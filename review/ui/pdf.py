"""The HTML report as a PDF, drawn by Qt's rich-text engine (no browser, no new dependency).

QTextDocument knows neither inline SVG nor data: URLs, so the plots (inline SVG) are rendered to
images with QtSvg and the thumbnails (base64 JPEG) decoded, and both handed to the document as
resources before it is laid out on A4 pages by QPdfWriter. Qt needs a QGuiApplication: the one
running is used; without one, an offscreen one is made.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QMarginsF, QRectF, QSizeF, QUrl
from PySide6.QtGui import (
    QGuiApplication,
    QImage,
    QPageLayout,
    QPageSize,
    QPainter,
    QPdfWriter,
    QTextDocument,
)
from PySide6.QtSvg import QSvgRenderer

from review.errors import ReviewError
from review.gates import GateRules
from review.labels import LabelSet
from review.query import ReportFilters

_SVG = re.compile(r"<svg\b.*?</svg>", re.S)
_DATA_IMG = re.compile(r"src='data:image/(?:jpeg|png);base64,([A-Za-z0-9+/=]+)'")
_CARD = re.compile(r"(<div class='card'>)([^<]*)<b>")
_HSL = re.compile(r"hsl\((\d+),(\d+)%,(\d+)%\)")
_RESOLUTION = 300  # dots per inch of the PDF's drawing surface
_SCALE = 2  # plots are rasterised at twice their CSS size, so they stay sharp when printed

_app: QGuiApplication | None = None


def _ensure_app() -> None:
    global _app
    if QGuiApplication.instance() is None:
        # Only a page is drawn, never a window: offscreen works with or without a display.
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        _app = QGuiApplication([])


def _hsl_to_hex(m: re.Match[str]) -> str:
    """Qt's rich text takes #rrggbb surely; the heat-map cells are written as hsl()."""
    import colorsys

    h, s, lum = (int(m.group(i)) for i in (1, 2, 3))
    r, g, b = colorsys.hls_to_rgb(h / 360, lum / 100, s / 100)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def _svg_image(svg: str) -> QImage:
    renderer = QSvgRenderer(QByteArray(svg.encode("utf-8")))
    size = renderer.defaultSize()
    image = QImage(size.width() * _SCALE, size.height() * _SCALE, QImage.Format.Format_ARGB32)
    image.fill(0xFFFFFFFF)
    painter = QPainter(image)
    renderer.render(painter)
    painter.end()
    return image


def _document(html: str) -> QTextDocument:
    doc = QTextDocument()
    images: dict[str, QImage] = {}

    def svg(m: re.Match[str]) -> str:
        name = f"plot{len(images)}.png"
        image = _svg_image(m.group(0))
        images[name] = image
        return f"<img src='{name}' width='{image.width() // _SCALE}'>"

    def data(m: re.Match[str]) -> str:
        name = f"thumb{len(images)}.img"
        image = QImage()
        image.loadFromData(base64.b64decode(m.group(1)))
        images[name] = image
        return f"src='{name}' width='142'"

    # Rich text has no flex boxes: the summary cards stack, so keep their parts apart in words.
    html = _CARD.sub(r"\1\2: <b>", html)
    html = html.replace("</b><span class='muted'>", "</b> &nbsp; <span class='muted'>")
    html = _SVG.sub(svg, html)
    html = _DATA_IMG.sub(data, html)
    html = _HSL.sub(_hsl_to_hex, html)
    for name, image in images.items():
        doc.addResource(QTextDocument.ResourceType.ImageResource, QUrl(name), image)
    doc.setDefaultStyleSheet("body{font-family:sans-serif;font-size:9pt}")
    doc.setHtml(html)
    return doc


def write_pdf(html: str, path: Path) -> int:
    """Lay `html` (the report page of review.html) out on A4 pages in `path`; returns the pages."""
    _ensure_app()
    writer = QPdfWriter(str(path))
    writer.setResolution(_RESOLUTION)
    writer.setPageLayout(
        QPageLayout(
            QPageSize(QPageSize.PageSizeId.A4),
            QPageLayout.Orientation.Portrait,
            QMarginsF(12, 12, 12, 12),
            QPageLayout.Unit.Millimeter,
        )
    )
    writer.setTitle("Inspection Station - agreement report")
    doc = _document(html)
    # Lay the page out at a screen-like width (about 1000 px across the printable A4 width) and
    # scale it onto the page, so the report keeps the proportions it has in a browser.
    rect = writer.pageLayout().paintRectPixels(_RESOLUTION)
    width_px = 1000.0
    scale = rect.width() / width_px
    doc.setPageSize(QSizeF(width_px, rect.height() / scale))
    pages = doc.pageCount()
    painter = QPainter()
    if not painter.begin(writer):
        raise ReviewError(f"cannot write a PDF at {path}: expected a writable file")
    try:
        painter.scale(scale, scale)
        page_h = rect.height() / scale
        for i in range(pages):
            if i:
                writer.newPage()
            painter.save()
            painter.translate(0, -i * page_h)
            doc.drawContents(painter, QRectF(0, i * page_h, width_px, page_h))
            painter.restore()
    finally:
        painter.end()
    return pages


def write_pdf_report(
    engine: Any,
    filters: ReportFilters,
    out: Path,
    *,
    labels: LabelSet,
    rules: GateRules | None = None,
    image_root: Path | None = None,
) -> dict[str, Any]:
    """The HTML report of `filters` laid out as a PDF at `out` (atomically, like the other
    formats of review.report.write_report); returns the same short summary."""
    from review.html import render_html
    from review.report import build_report, check_out_path

    out = check_out_path(out)
    report = build_report(engine, filters, labels=labels, rules=rules)
    tmp = out.with_name(out.name + ".partial")
    try:
        pages = write_pdf(render_html(report, image_root=image_root), tmp)
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return {
        "format": "pdf",
        "path": str(out),
        "pages": pages,
        "counts": report["counts"],
        "messages": report["messages"],
    }
