"""Training packages: COG windows exported to one HDF5 file in the MMEarth layout.

A package is `data_<name>.h5` (one dataset per modality, (N, C, H, W), one sample per
chunk, a compound `metadata` dataset) plus three JSON sidecars beside it:
`data_<name>_band_stats.json`, `data_<name>_splits.json`, `data_<name>_tile_info.json`.
docs/hdf5.md describes the layout for readers that have only h5py.

- `layout`: the names every module agrees on (datasets, attributes, sidecars).
- `export`: COG windows (drawn by the engine's samplers, read by the engine) to a package.
- `validate`: a package's shapes, dtypes and splits against its own records; pixels
  against the source COGs.
- `dataset`: a PyTorch map-style dataset over a package, safe with DataLoader workers.
- `remote`: a package read by byte ranges from s3:// or http(s):// (h5py's fileobj driver).
- `bench`: HDF5 streaming rows in the shape of `ocog_lib.bench.local.BenchRow`.

Modules are imported by name; this package imports nothing heavy on its own.
"""
