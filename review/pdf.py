"""The HTML report as a PDF: the same page (review.html), laid out on A4 by WeasyPrint through
the page's own print style (summary and gates on page 1, the matrices from page 2, a gallery grid,
rows never split across pages, page numbers in the footer).

WeasyPrint draws with Pango: on a bare Debian, `apt-get install libpango-1.0-0 libpangoft2-1.0-0
libharfbuzz-subset0` (see the README). Without them the PDF is refused with that advice; the HTML report needs nothing.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from review.errors import ReviewError

PANGO_HINT = (
    "the PDF report needs the Pango text libraries: `apt-get install libpango-1.0-0 "
    "libpangoft2-1.0-0 libharfbuzz-subset0` (the HTML report works without them)"
)


def _weasyprint() -> Any:
    try:
        with warnings.catch_warnings():
            # "HarfBuzz-Subset will be required by future versions": advice for the packager
            # (the README's apt list has it), not for the user reading a report.
            warnings.simplefilter("ignore", DeprecationWarning)
            import weasyprint
    except OSError as e:  # the Python package is there, the system libraries are not
        raise ReviewError(f"{PANGO_HINT}: {e}") from e
    # WeasyPrint logs every CSS property it does not know at WARNING; they are not the user's.
    logging.getLogger("weasyprint").setLevel(logging.ERROR)
    logging.getLogger("fontTools").setLevel(logging.ERROR)
    return weasyprint


def write_pdf(html: str, path: Path) -> int:
    """Lay `html` (the report page of review.html) out on A4 pages in `path`; returns the pages."""
    weasyprint = _weasyprint()
    document = weasyprint.HTML(string=html).render()
    try:
        document.write_pdf(str(path))
    except OSError as e:
        raise ReviewError(f"cannot write a PDF at {path}: {e}") from e
    return len(document.pages)
