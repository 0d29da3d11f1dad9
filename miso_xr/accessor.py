"""``.miso`` on Datasets and DataArrays: a thin face that delegates to infer/ and io.

Accessors are cached per object by xarray, so ``__init__`` stores the object and does no work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import xarray as xr

__all__ = ["MisoDatasetAccessor", "MisoDataArrayAccessor"]


class _MisoAccessorBase:
    def __init__(self, xarray_obj: xr.Dataset | xr.DataArray) -> None:
        self._obj = xarray_obj

    @property
    def grid(self):
        """The cube's :class:`~miso_xr.cube.grid.Grid` (CRS, corner, resolution, shape)."""
        from .cube.grid import Grid

        return Grid.from_dataset(self._obj)

    def to_cog(self, path: str, **kwargs: Any) -> str:
        """Write to a Cloud-Optimised GeoTIFF (see :func:`miso_xr.io.to_cog`)."""
        from .io import to_cog

        return to_cog(self._obj, path, **kwargs)

    def to_zarr(self, store: str, **kwargs: Any) -> Any:
        """Write to Zarr chunk by chunk, resuming an interrupted write (see :func:`miso_xr.io.to_zarr`).

        ``mode=``, ``compute=False``, ``storage_options=`` and ``encoding=`` as in
        ``xarray.Dataset.to_zarr``.
        """
        from .io import to_zarr

        return to_zarr(self._obj, store, **kwargs)


@xr.register_dataset_accessor("miso")
class MisoDatasetAccessor(_MisoAccessorBase):
    """``cube.miso``: predict maps from a cube, write maps, suggest where to sample next."""

    def predict(
        self,
        model: Any,
        *,
        window: int | None = None,
        stride: int | None = None,
        batch_size: int | str | None = "auto",
        device: str = "auto",
        outputs: Sequence[str] = ("probability", "label", "uncertainty"),
        **kwargs: Any,
    ) -> xr.Dataset:
        """Lazy maps of ``model`` over this cube (see :func:`miso_xr.infer.predict.predict`)."""
        from ._files import check_finished
        from .infer.predict import predict

        check_finished(self._obj, "the cube")
        return predict(
            self._obj,
            model,
            window=window,
            stride=stride,
            batch_size=batch_size,
            device=device,
            outputs=outputs,
            **kwargs,
        )

    def check(self, model: Any) -> None:
        """Raise :class:`~miso_xr.exceptions.IncompatibleCubeError` naming what the model needs."""
        from .infer.predict import check_cube

        check_cube(self._obj, model.spec)

    def plot(self, path: str, *, observations: Any = None, **kwargs: Any) -> str:
        """Draw maps (label, probability, uncertainty; observations on top) to a PNG
        (see :func:`miso_xr.figures.plot_maps`)."""
        from .figures import plot_maps

        return plot_maps(self._obj, path, observations=observations, **kwargs)

    def suggest_samples(self, n: int, **kwargs: Any):
        """The ``n`` places where a new field observation would help most (a table)."""
        from .infer.uncertainty import suggest_samples

        return suggest_samples(self._obj, n, **kwargs)


@xr.register_dataarray_accessor("miso")
class MisoDataArrayAccessor(_MisoAccessorBase):
    """``da.miso``: grid and writers for single maps."""
