"""A series as a sparkline small enough to show in place in the Dagster UI.

Dagster 1.13 renders a markdown metadata value in place only when it is shorter than 1000
characters (MetadataEntry.tsx: `expandSmallValues && entry.mdStr.length < 1000`); anything
longer, like every full plot as a base64 PNG, sits behind "[Show Markdown]". A two-colour
palette PNG of one line is a few hundred bytes, so the trend shows on the asset page and
the full plot stays one click away.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Sequence

from ocog_lib.errors import InputError

INLINE_LIMIT = 1000  # characters: the UI's limit for markdown shown in place
_LINE_RGB = (79, 67, 221)  # a blue that reads on the UI's light and dark themes


def sparkline_png(values: Sequence[float], width: int = 240, height: int = 48) -> bytes:
    """The finite values, left to right, as one line on a transparent background."""
    from PIL import Image, ImageDraw

    ys = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not ys:
        raise InputError("sparkline values", "no finite value to draw")
    lo, hi = min(ys), max(ys)
    span = (hi - lo) or 1.0
    step = (width - 1) / max(len(ys) - 1, 1)
    points = [(round(i * step), round((height - 3) - (y - lo) / span * (height - 5)) + 1)
              for i, y in enumerate(ys)]
    image = Image.new("P", (width, height), 0)
    image.putpalette([255, 255, 255, *_LINE_RGB])
    draw = ImageDraw.Draw(image)
    if len(points) == 1:
        draw.ellipse([points[0][0] - 2, points[0][1] - 2, points[0][0] + 2, points[0][1] + 2],
                     fill=1)
    else:
        draw.line(points, fill=1, width=2)
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True, transparency=0)
    return out.getvalue()


def sparkline_markdown(values: Sequence[float], caption: str) -> str:
    """Markdown of the sparkline and its caption (e.g. the range), under INLINE_LIMIT: the
    sparkline shrinks until it fits."""
    width = 240
    while True:
        data = base64.b64encode(sparkline_png(values, width=width)).decode()
        text = f"![trend](data:image/png;base64,{data})\n\n{caption}"
        if len(text) < INLINE_LIMIT or width <= 60:
            return text if len(text) < INLINE_LIMIT else caption
        width //= 2
