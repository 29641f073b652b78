"""Composites are sliced by area (a sample time stack) and period (a quarter of its year).

The set is static: the sample stacks' dates are fixed by their builders
(`ocog_lib.data.timestack`), so which quarters hold scenes is known without building them.
The Sentinel-2 stack has a scene about every 30 days (every quarter holds three); the
Landsat one a single placeholder date, so only its quarter has a composite and the others
fail naming the dates and the cause (no scene selected).
"""

from __future__ import annotations

import calendar
import datetime as dt
import inspect

import dagster as dg

from ocog_lib.data import timestack

S2_AREA, L8_AREA = "sample-s2", "sample-l8"  # folders under $OCOG_DATA_DIR/timestack/
AREAS = (S2_AREA, L8_AREA)
_DEFAULTS = inspect.signature(timestack.build_time_stack).parameters
YEAR: int = _DEFAULTS["year"].default  # the derived stack's year (the Landsat date's too)
PERIODS = tuple(f"{YEAR}-Q{q}" for q in range(1, 5))

areas = dg.StaticPartitionsDefinition(list(AREAS))
periods = dg.StaticPartitionsDefinition(list(PERIODS))
# keys read "area|period", e.g. "sample-s2|2024-Q3"
area_period = dg.MultiPartitionsDefinition({"area": areas, "period": periods})


def area_and_period(context: dg.AssetExecutionContext) -> tuple[str, str]:
    keys = context.partition_key.keys_by_dimension
    return keys["area"], keys["period"]


def period_bounds(period: str) -> tuple[str, str]:
    """("YYYY-MM-DD", "YYYY-MM-DD"): a quarter's first and last day (both inclusive)."""
    year, quarter = period.split("-Q")
    y, last_month = int(year), 3 * int(quarter)
    last_day = calendar.monthrange(y, last_month)[1]
    return f"{y}-{last_month - 2:02d}-01", f"{y}-{last_month:02d}-{last_day:02d}"


def period_of(when: dt.datetime) -> str:
    return f"{when.year}-Q{(when.month - 1) // 3 + 1}"


def scene_times(area: str) -> list[dt.datetime]:
    """The dates the area's builder gives its scenes (with the builder's defaults)."""
    if area == S2_AREA:
        return timestack.scene_dates(_DEFAULTS["dates"].default, YEAR)
    return [dt.datetime.fromisoformat(timestack.L8_DATETIME.replace("Z", "+00:00"))]


def latest_period(area: str) -> str:
    """The last period of the partition set in which the area has scenes."""
    held = {period_of(t) for t in scene_times(area)}
    return [p for p in PERIODS if p in held][-1]
