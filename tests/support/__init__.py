"""Test tools shared across test packages: rasters, servers, fault fronts, fixtures."""
