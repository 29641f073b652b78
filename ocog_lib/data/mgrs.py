"""MGRS tile ids (zone + latitude band + 100 km square), the names Sentinel-2 tiles go by.

The 100 km square letters follow the standard MGRS scheme for WGS 84 (the "AA" lettering
Sentinel-2 uses): column letters run A-H, J-R, S-Z in a cycle of three zones (I and O are
skipped), starting at easting 100 km; row letters run A-V (20 letters, no I or O) upward
from the equator every 2000 km, shifted by five letters (start at F) in even zones.
UTM coordinates come from GDAL (via rasterio), so only the lettering is done here.
"""

from __future__ import annotations

from ocog_lib.errors import InputError

LATITUDE_BANDS = "CDEFGHJKLMNPQRSTUVWX"  # 8 degrees each from 80 S; X spans 72-84 N
COLUMN_SETS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
ROW_LETTERS = "ABCDEFGHJKLMNPQRSTUV"


def latitude_band(lat: float) -> str:
    if not -80.0 <= lat <= 84.0:
        raise InputError(f"latitude {lat}", "outside the UTM/MGRS range (80 S to 84 N)")
    return LATITUDE_BANDS[min(int((lat + 80.0) // 8), len(LATITUDE_BANDS) - 1)]


def utm_zone(lon: float, lat: float) -> int:
    """UTM zone with the Norway (32V) and Svalbard (31X-37X) exceptions."""
    lon = (lon + 180.0) % 360.0 - 180.0
    zone = min(int((lon + 180.0) // 6) + 1, 60)
    if 56.0 <= lat < 64.0 and 3.0 <= lon < 12.0:
        return 32
    if 72.0 <= lat <= 84.0 and lon >= 0.0:
        if lon < 9.0:
            return 31
        if lon < 21.0:
            return 33
        if lon < 33.0:
            return 35
        if lon < 42.0:
            return 37
    return zone


def square_letters(zone: int, easting: float, northing: float) -> str:
    """The two letters of the 100 km square holding (easting, northing) in `zone`."""
    column = int(easting // 100_000)
    if not 1 <= column <= 8:
        raise InputError(f"easting {easting}", f"outside UTM zone {zone}'s 100 km columns")
    col_letter = COLUMN_SETS[(zone - 1) % 3][column - 1]
    row = int(northing // 100_000) % 20
    row_letter = ROW_LETTERS[(row + (5 if zone % 2 == 0 else 0)) % 20]
    return col_letter + row_letter


def utm_epsg(zone: int, lat: float) -> int:
    return (32600 if lat >= 0 else 32700) + zone


def mgrs_tile(lon: float, lat: float) -> str:
    """MGRS 100 km tile id such as '18TWL' for a WGS 84 point (lon, lat in degrees)."""
    from rasterio.crs import CRS  # here, not at import: `ocog --help` imports this module
    from rasterio.warp import transform

    band = latitude_band(lat)
    zone = utm_zone(lon, lat)
    xs, ys = transform(CRS.from_epsg(4326), CRS.from_epsg(utm_epsg(zone, lat)), [lon], [lat])
    return f"{zone:02d}{band}{square_letters(zone, xs[0], ys[0])}"
