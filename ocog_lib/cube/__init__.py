"""Virtual data cubes: band math and temporal reducers over a time stack of COGs, on the fly.

Nothing is stored: a tile, point or box is read from the scenes' COGs at the overview level
the view needs (only the tiles that window touches, through the engine's byte-range layer
and one decoded-tile cache per process), warped with GDAL as rio-tiler would, masked,
evaluated and reduced over time.

Modules: `stack` (SceneStack, Scene, Selection: stack.json), `expression` (safe band math),
`reducers` (nan-aware temporal reducers), `masks` (SCL classes, Landsat BQA bits), `plan`
(which level and grid GDAL's warped VRT would read for a view), `sources` (headers and
windows through `ocog_lib.stream`), `warp` (GDAL warp and resampling of those windows) and
`reads` (read_tile, read_point, read_bbox); `render` (colormaps, stretch, PNG) and
`composite` (a period's reduced box written as a COG, with a preview: the one stored product).
"""
