"""The cube: one regular grid, one ``(<modality>_band, y, x)`` float32 variable per modality."""

from __future__ import annotations

from .grid import Grid, band_dim, make_cube, modality_array

__all__ = ["Grid", "band_dim", "make_cube", "modality_array"]
