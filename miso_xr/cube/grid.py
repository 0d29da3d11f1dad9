"""The grid every modality is aligned onto, and the cube convention.

A cube is an ``xr.Dataset`` on one regular grid with pixel-centre ``x``/``y`` coordinates (``y``
decreasing, north up) and the CRS recorded the rioxarray way (a ``spatial_ref`` coordinate). Each
modality is one float32 variable with dims ``(f"{modality}_band", "y", "x")`` and NaN as nodata.

Why ``optical_band`` rather than a shared ``band`` dimension: an ``xr.Dataset`` gives a dimension
one size and one coordinate across all its variables, so 9 optical bands and 6 covariates cannot
both be called ``band``. :func:`modality_array` gives a modality back as a plain ``(band, y, x)``
DataArray for code that wants that name.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from ..exceptions import InputError, MissingBandError

__all__ = [
    "OPTICAL_BANDS",
    "SAR_BANDS",
    "Grid",
    "band_dim",
    "make_cube",
    "modality_array",
    "require_bands",
    "select_modalities",
    "spatial_chunks",
]

#: Canonical band names of the optical (Sentinel-2 L2A, in MISO's order) and SAR modalities,
#: whatever a catalog calls its assets. Terrain names are in :mod:`miso_xr.cube.terrain`.
OPTICAL_BANDS: tuple[str, ...] = ("B04", "B03", "B02", "B05", "B06", "B07", "B08", "B11", "B12")
SAR_BANDS: tuple[str, ...] = ("vv", "vh")


def band_dim(modality: str) -> str:
    """Name of the band dimension of a modality's variable (``"optical"`` -> ``"optical_band"``)."""
    return f"{modality}_band"


@dataclass(frozen=True)
class Grid:
    """A north-up regular grid: CRS, top-left corner, square pixel size and shape.

    >>> g = Grid("EPSG:3338", left=0.0, top=1000.0, resolution=10.0, width=100, height=50)
    >>> float(g.x[0]), float(g.y[0]), g.bounds
    (5.0, 995.0, (0.0, 500.0, 1000.0, 1000.0))
    """

    crs: str
    left: float
    top: float
    resolution: float
    width: int
    height: int

    def __post_init__(self) -> None:
        if not (self.resolution > 0 and math.isfinite(self.resolution)):
            raise InputError(
                f"resolution={self.resolution!r}: must be a positive number of CRS units"
            )
        if self.width < 1 or self.height < 1:
            raise InputError(
                f"grid shape {self.height}x{self.width} is empty; bounds must span at least one pixel"
            )

    @classmethod
    def from_bounds(
        cls,
        bounds: Sequence[float],
        resolution: float,
        crs: str = "EPSG:3338",
        *,
        snap: bool = False,
    ) -> Grid:
        """The grid covering ``bounds = (left, bottom, right, top)`` in ``crs``.

        The top-left corner is exactly ``(left, top)`` unless ``snap=True``, which moves the corner
        outward onto a multiple of ``resolution`` (so grids of neighbouring requests line up).
        """
        left, bottom, right, top = (float(v) for v in bounds)
        if not (right > left and top > bottom):
            raise InputError(
                f"bounds={tuple(bounds)!r}: expected (left, bottom, right, top) with right > left and top > bottom"
            )
        res = float(resolution)
        if snap:
            left = math.floor(left / res) * res
            top = math.ceil(top / res) * res
            right = math.ceil(right / res) * res
            bottom = math.floor(bottom / res) * res
        width = max(1, math.ceil((right - left) / res - 1e-6))
        height = max(1, math.ceil((top - bottom) / res - 1e-6))
        return cls(str(crs), left, top, res, width, height)

    @classmethod
    def from_dataset(cls, obj: xr.Dataset | xr.DataArray) -> Grid:
        """Read the grid of a cube (pixel-centre coordinates, CRS from ``spatial_ref``)."""
        for dim in ("x", "y"):
            if dim not in obj.coords or obj.sizes[dim] < 1:
                raise InputError(
                    f"the cube has no '{dim}' coordinate; a MISO cube has pixel-centre x and y"
                )
        x = np.asarray(obj["x"].values, dtype="float64")
        y = np.asarray(obj["y"].values, dtype="float64")
        if x.size > 1:
            res = float(x[1] - x[0])
        elif y.size > 1:
            res = float(y[0] - y[1])
        else:
            res = float(obj.attrs.get("resolution", 0) or 0)
        if y.size > 1 and not np.isclose(y[0] - y[1], res, rtol=1e-6):
            raise InputError(
                f"the cube's pixels are not square north-up: dx={res}, dy={y[1] - y[0]}; "
                "expected y decreasing by the same step as x increases"
            )
        crs = None
        try:
            rio_crs = obj.rio.crs
            crs = rio_crs.to_string() if rio_crs is not None else None
        except Exception:  # noqa: BLE001 - no rioxarray CRS recorded
            crs = None
        if crs is None:
            crs = obj.attrs.get("crs")
        if crs is None:
            raise InputError(
                "the cube records no CRS; write one with cube.rio.write_crs('EPSG:3338')"
            )
        return cls(crs, float(x[0] - res / 2), float(y[0] + res / 2), res, int(x.size), int(y.size))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (
            self.left,
            self.top - self.height * self.resolution,
            self.left + self.width * self.resolution,
            self.top,
        )

    @property
    def transform(self):  # -> affine.Affine
        from affine import Affine

        return Affine(self.resolution, 0.0, self.left, 0.0, -self.resolution, self.top)

    @property
    def x(self) -> np.ndarray:
        """Pixel-centre x coordinates."""
        return self.left + (np.arange(self.width) + 0.5) * self.resolution

    @property
    def y(self) -> np.ndarray:
        """Pixel-centre y coordinates (decreasing)."""
        return self.top - (np.arange(self.height) + 0.5) * self.resolution

    def index(self, x: np.ndarray | float, y: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) of the pixels containing points ``x, y`` (may fall outside the grid)."""
        col = np.floor((np.asarray(x, dtype="float64") - self.left) / self.resolution).astype(
            "int64"
        )
        row = np.floor((self.top - np.asarray(y, dtype="float64")) / self.resolution).astype(
            "int64"
        )
        return row, col

    def contains(self, x: np.ndarray | float, y: np.ndarray | float) -> np.ndarray:
        row, col = self.index(x, y)
        return (row >= 0) & (row < self.height) & (col >= 0) & (col < self.width)


#: What ``chunks=`` accepts, in the words of the error message (as ``xarray.Dataset.chunk`` does).
_CHUNKS_HELP = (
    'an int (pixels along y and x; -1 = one chunk), "auto" (dask\'s array.chunk-size), a dict '
    '{"y": .., "x": ..} of those (a missing dim is one chunk), or (y, x)'
)


def spatial_chunks(
    chunks: Any, shape: tuple[int, int], *, bands: int = 1, name: str = "chunks"
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``chunks=`` as xarray accepts it, resolved to explicit ``(y_chunks, x_chunks)``.

    Accepts an int (``-1``: one chunk), ``"auto"`` (dask's ``array.chunk-size`` for a float32
    array of ``bands`` bands, never split along bands), ``{"y": .., "x": ..}`` (values: int, -1,
    ``"auto"``, ``None`` or explicit chunk sizes; a missing dimension is one chunk, as for an
    unchunked array in ``Dataset.chunk``) or a ``(y, x)`` pair. Every cube reader resolves its
    ``chunks=`` here, so the same value gives the same chunks whichever reader is used.

    >>> spatial_chunks({"x": 40}, (100, 100))
    ((100,), (40, 40, 20))
    >>> spatial_chunks(-1, (10, 20))
    ((10,), (20,))
    """
    import dask.array as da

    def bad(why: str) -> InputError:
        return InputError(f"{name}={chunks!r}: {why}; expected {_CHUNKS_HELP}")

    def one(value: Any, dim: str) -> Any:
        if value is None:
            return -1
        if isinstance(value, bool):
            raise bad(f"{dim}: a bool is not a chunk size")
        if isinstance(value, (int, np.integer)):
            if value == 0 or value < -1:
                raise bad(f"{dim}: a chunk size must be positive or -1")
            return int(value)
        if value == "auto":
            return "auto"
        if isinstance(value, (tuple, list)) and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in value
        ):
            return tuple(int(v) for v in value)
        raise bad(f"{dim}: {value!r} is not a chunk size")

    if isinstance(chunks, Mapping):
        unknown = (
            set(map(str, chunks))
            - {"y", "x"}
            - {k for k in map(str, chunks) if k.endswith("_band")}
        )
        if unknown:
            raise bad(f"unknown dimension(s) {sorted(unknown)}")
        spec = (one(chunks.get("y"), "y"), one(chunks.get("x"), "x"))
    elif isinstance(chunks, (tuple, list)) and len(chunks) == 2:
        spec = (one(chunks[0], "y"), one(chunks[1], "x"))
    else:
        spec = (one(chunks, "y and x"), one(chunks, "y and x"))
    try:
        out = da.core.normalize_chunks(
            (-1, *spec), shape=(max(int(bands), 1), *shape), dtype=np.float32
        )
    except ValueError as err:  # explicit sizes that do not add up to the grid
        raise bad(f"{err} (grid {shape[0]} x {shape[1]} pixels)") from None
    return tuple(out[1]), tuple(out[2])


def make_cube(
    modalities: Mapping[str, tuple[Any, Sequence[str]]],
    grid: Grid,
    *,
    chunks: int | str | Mapping[str, Any] | tuple[Any, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Assemble a cube from arrays already on ``grid``.

    ``modalities`` maps a modality name to ``(array, band_names)`` with ``array`` of shape
    ``(band, y, x)`` (numpy or dask). Values become float32. ``chunks`` takes what
    ``xarray.Dataset.chunk`` takes (an int, -1, ``"auto"``, ``{"y": .., "x": ..}``; see
    :func:`spatial_chunks`) and makes numpy input dask-backed; ``None`` leaves arrays as given.

    >>> import numpy as np
    >>> g = Grid("EPSG:3338", 0.0, 640.0, 10.0, 64, 64)
    >>> cube = make_cube({"covariates": (np.zeros((1, 64, 64)), ["elevation"])}, g, chunks=32)
    >>> cube["covariates"].dims, cube.rio.crs.to_epsg()
    (('covariates_band', 'y', 'x'), 3338)
    """
    import rioxarray  # noqa: F401 - registers .rio

    data_vars = {}
    coords: dict[str, Any] = {"x": ("x", grid.x), "y": ("y", grid.y)}
    for name, (array, bands) in modalities.items():
        bands = [str(b) for b in bands]
        if array.ndim != 3 or tuple(array.shape[1:]) != grid.shape or array.shape[0] != len(bands):
            raise InputError(
                f"modality {name!r}: array shape {tuple(array.shape)} does not match "
                f"({len(bands)} bands, {grid.height}, {grid.width})"
            )
        dim = band_dim(name)
        coords[dim] = (dim, np.array(bands, dtype=object).astype(str))
        if array.dtype != np.float32:
            array = array.astype("float32")
        data_vars[name] = ((dim, "y", "x"), array, {"nodata": np.nan, "modality": name})
    ds = xr.Dataset(data_vars, coords=coords, attrs=dict(attrs or {}))
    ds["x"].attrs.update(units="metre", long_name="x coordinate of pixel centre", axis="X")
    ds["y"].attrs.update(units="metre", long_name="y coordinate of pixel centre", axis="Y")
    ds = ds.rio.write_crs(grid.crs).rio.write_transform(grid.transform)
    if chunks is not None:
        nb = max((len(b) for _, b in modalities.values()), default=1)
        ychunks, xchunks = spatial_chunks(chunks, grid.shape, bands=nb)
        spec: dict[str, Any] = {"y": ychunks, "x": xchunks}
        spec.update({band_dim(m): -1 for m in modalities})
        ds = ds.chunk(spec)
    return ds


def modality_array(cube: xr.Dataset, modality: str) -> xr.DataArray:
    """A modality as a ``(band, y, x)`` DataArray (the band dimension renamed to ``band``)."""
    if modality not in cube.data_vars:
        raise InputError(
            f"the cube has no modality {modality!r}; it has {sorted(map(str, cube.data_vars))}"
        )
    return cube[modality].rename({band_dim(modality): "band"})


def select_modalities(
    cube: xr.Dataset, modalities: Sequence[str] | None, *, require_any: bool = True
) -> list[str]:
    """The cube's modalities to use: all of them (``None``) or those asked, checked present.

    Raises :class:`InputError` for something other than a Dataset and
    :class:`MissingBandError` naming the first modality asked that the cube lacks (or, with
    ``require_any``, when the cube has no modality variable at all).
    """
    if not isinstance(cube, xr.Dataset):
        raise InputError(
            f"cube is a {type(cube).__name__}; expected an xr.Dataset with one "
            "(<modality>_band, y, x) variable per modality"
        )
    have = [str(m) for m in cube.data_vars if band_dim(str(m)) in cube[m].dims]
    if modalities is None:
        if require_any and not have:
            raise MissingBandError(
                f"the cube has no modality variables (dims (<modality>_band, y, x)); it has "
                f"{sorted(map(str, cube.data_vars))}"
            )
        return have
    mods = [str(m) for m in modalities]
    for m in mods:
        if m not in have:
            raise MissingBandError(
                f"the cube has no modality {m!r}; it has {have} (asked for {mods})"
            )
    return mods


def require_bands(
    cube: xr.Dataset, bands: Mapping[str, Sequence[str]], *, needed_by: str = "the model"
) -> None:
    """Raise :class:`MissingBandError` naming the first modality or band ``needed_by`` lacks.

    >>> require_bands(cube, {"optical": OPTICAL_BANDS}, needed_by="this Random Forest")  # doctest: +SKIP
    """
    for m, want in bands.items():
        if m not in cube.data_vars:
            raise MissingBandError(
                f"the cube has no modality {m!r}; {needed_by} needs {m!r} with bands "
                f"{' '.join(want)}"
            )
        have = [str(b) for b in cube[m][band_dim(m)].values]
        missing = [b for b in want if b not in have]
        if missing:
            raise MissingBandError(
                f"the cube has no band {missing[0]!r} in {m!r}; {needed_by} needs {' '.join(want)}"
            )
