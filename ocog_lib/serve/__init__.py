"""The tile server: band math over a time stack per XYZ tile, computed on request."""
