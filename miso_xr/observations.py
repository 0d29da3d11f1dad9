"""Read field observations and validate them: one clean table of points, and a report of what was wrong.

Field data is dirty. Spreadsheets lose the minus sign of western longitudes, missing coordinates
become 0/0, the same pedon is entered twice with two different orders, labels are spelt many ways.
:func:`read_observations` reads CSV, GeoJSON, GeoPackage (or any vector file pyogrio reads) or a
DataFrame, projects the points, maps the labels to the task's classes, and checks every row. Rows
that cannot be used are dropped (or repaired, or refused, as asked), and each reason is counted in
an :class:`ObservationReport` kept in ``obs.attrs["report"]``.

The table follows the contract in ``docs/architecture.md``: float ``x``, ``y`` (CRS
``obs.attrs["crs"]``), ``lon``, ``lat`` and a Categorical ``label`` whose categories are the classes
in model order; unlabelled points have a NaN label. The other columns of the source are kept after
these, and the index is the source's row index so a reported row can be found in the file.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._labels import _check_task_name, _infer_task, _label_mapper, _norm
from ._observation_report import REASONS, ObservationReport
from .exceptions import InputError, ObservationError
from .spec import PERMAFROST_CLASSES, SOIL_ORDERS

__all__ = [
    "PERMAFROST_CLASSES",
    "SOIL_ORDERS",
    "STUDY_REGION",
    "ObservationReport",
    "read_observations",
]

# Where MISO's users work, as (lon0, lat0, lon1, lat1) boxes: Alaska, Yukon and British Columbia,
# and the western Aleutians beyond the antimeridian (their longitudes are truly positive).
STUDY_REGION = ((-180.0, 47.0, -110.0, 72.0), (170.0, 50.0, 180.0, 56.0))

_LON_NAMES = ("lon", "lng", "long", "longitude", "lon_dd", "longitude_dd")
_LAT_NAMES = ("lat", "latitude", "lat_dd", "latitude_dd")
_X_NAMES = ("x", "easting", "east")
_Y_NAMES = ("y", "northing", "north")
_LABEL_NAMES = ("label", "permafrost", "soil_order", "order", "taxorder", "class")
_ON_INVALID = ("drop", "fix", "raise")


def _find_column(columns: Sequence[Any], names: Sequence[str]) -> Any | None:
    lower = {str(c).strip().lower(): c for c in columns}
    for n in names:
        if n in lower:
            return lower[n]
    return None


def _read_table(source: Any) -> tuple[pd.DataFrame, str]:
    """The source as a (Geo)DataFrame and a name for messages."""
    if isinstance(source, pd.DataFrame):
        return source.copy(), "DataFrame"
    if not isinstance(source, (str, os.PathLike)):
        raise ObservationError(
            f"source is a {type(source).__name__}; expected a path to a CSV, GeoJSON or "
            "GeoPackage file, or a pandas/geopandas DataFrame"
        )
    path = Path(source)
    if not path.exists():
        raise ObservationError(f"observation file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".txt"):
            return pd.read_csv(path), str(path)
        if suffix == ".tsv":
            return pd.read_csv(path, sep="\t"), str(path)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path), str(path)
        if suffix in (".geojson", ".json", ".gpkg", ".shp", ".fgb", ".gml", ".kml", ".zip"):
            import geopandas as gpd

            return gpd.read_file(path, engine="pyogrio"), str(path)
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise ObservationError(f"could not read observation file {str(path)!r}: {err}") from err
    raise ObservationError(
        f"observation file {str(path)!r} has suffix {suffix!r}; expected .csv, .tsv, .geojson, "
        ".json, .gpkg, .shp, .fgb or .parquet"
    )


def _coordinates(
    df: pd.DataFrame, crs: str | None
) -> tuple[np.ndarray, np.ndarray, str, bool, list[Any]]:
    """(a, b, source CRS, geographic?, columns used): raw coordinates of every row."""
    from pyproj import CRS

    geom = getattr(df, "geometry", None) if "geometry" in df.columns else None
    if geom is not None and hasattr(geom, "geom_type"):
        src = crs or (geom.crs.to_string() if geom.crs is not None else None)
        if src is None:
            raise ObservationError(
                "the observations' geometry has no CRS; pass crs='EPSG:4326' (or the file's CRS)"
            )
        kinds = set(geom.geom_type.dropna().unique()) - {"Point"}
        if kinds:
            raise ObservationError(
                f"observations must be points; the geometry column has {sorted(kinds)}. "
                "Use centroids (gdf.geometry = gdf.centroid) if that is what you mean"
            )
        empty = geom.isna() | geom.is_empty
        a = np.where(empty, np.nan, geom.x.where(~empty)).astype("float64")
        b = np.where(empty, np.nan, geom.y.where(~empty)).astype("float64")
        return a, b, src, CRS.from_user_input(src).is_geographic, ["geometry"]
    cols = list(df.columns)
    lon, lat = _find_column(cols, _LON_NAMES), _find_column(cols, _LAT_NAMES)
    xc, yc = _find_column(cols, _X_NAMES), _find_column(cols, _Y_NAMES)
    if crs is not None and not CRS.from_user_input(crs).is_geographic and xc is not None:
        use, src = (xc, yc), crs
    elif lon is not None and lat is not None:
        use, src = (lon, lat), crs or "EPSG:4326"
    elif crs is not None and xc is not None and yc is not None:
        use, src = (xc, yc), crs
    else:
        hint = (
            " (x/y columns were found: pass crs= with their CRS, e.g. crs='EPSG:3338')"
            if xc is not None and yc is not None
            else ""
        )
        raise ObservationError(
            f"observations have no coordinate columns: found {[str(c) for c in cols]}; expected "
            f"lon/lat ({'/'.join(_LON_NAMES[:4])} and {'/'.join(_LAT_NAMES[:2])}, any case) or "
            f"projected x/y with crs=, or point geometries{hint}"
        )
    a = pd.to_numeric(df[use[0]], errors="coerce").to_numpy("float64")
    b = pd.to_numeric(df[use[1]], errors="coerce").to_numpy("float64")
    return a, b, src, CRS.from_user_input(src).is_geographic, list(use)


def _refuse_degrees_as_metres(
    a: np.ndarray, b: np.ndarray, src: str, geographic: bool, used: list[Any]
) -> None:
    """Every point within 180 m of a projection's origin is degrees read as metres (lon/lat
    columns with a projected ``crs=``): refuse, since those rows would pass every check."""
    ok = np.isfinite(a) & np.isfinite(b) & ~((a == 0) & (b == 0))
    if geographic or not ok.any():
        return
    if ((np.abs(a[ok]) <= 180) & (np.abs(b[ok]) <= 90)).all():
        cols = "/".join(str(c) for c in used)
        raise ObservationError(
            f"the {cols} values look like longitude/latitude in degrees (e.g. {a[ok][0]:.6g}, "
            f"{b[ok][0]:.6g}), but crs={src!r} is projected (metres); drop crs= (lon/lat "
            "columns are read as WGS84 degrees) or give the CRS the values are in"
        )


def _coordinate_hints(
    a: np.ndarray,
    b: np.ndarray,
    geographic: bool,
    used: list[Any],
    reason: np.ndarray,
    grid: Any,
    dst: str,
) -> list[str]:
    """Likely causes when coordinates land out of range or off the cube (none when they fit)."""
    cols = [str(c) for c in used]
    ok = np.isfinite(a) & np.isfinite(b) & ~((a == 0) & (b == 0))
    if not ok.any():
        return []
    degrees = (np.abs(a) <= 180) & (np.abs(b) <= 90)
    hints: list[str] = []
    bad = ok & np.isin(reason, ["out_of_range", "outside_cube", "lost_minus_sign"])
    if not bad.any() or not geographic:
        return hints
    if (~degrees[bad]).mean() > 0.5 and np.median(np.abs(np.r_[a[bad], b[bad]])) > 1000:
        hints.append(
            f"{int(bad.sum())} rows have {'/'.join(cols)} values like {a[bad][0]:.6g}, "
            f"{b[bad][0]:.6g}: projected metres, not degrees. Pass crs= with their CRS, e.g. "
            "crs='EPSG:3338' (Alaska Albers) or crs='EPSG:32606' (UTM 6N)"
        )
        return hints
    # swapped columns: latitude read as longitude and the other way round
    sa, sb = b[bad], a[bad]
    in_range = (np.abs(sa) <= 180) & (np.abs(sb) <= 90)
    if grid is not None:
        fits = in_range & _grid_contains(grid, *_project(sa, sb, "EPSG:4326", dst))
    else:
        fits = in_range & _in_region(sa, sb, STUDY_REGION)
    if fits.sum() > 0.5 * bad.sum():
        where = "inside the cube" if grid is not None else "in the study region"
        swap = (
            f"pass x={cols[1]!r}, y={cols[0]!r}"
            if len(cols) == 2 and cols != ["geometry"]
            else "swap the point coordinates"
        )
        hints.append(
            f"{int(fits.sum())} of the {int(bad.sum())} rows flagged for their coordinates fall "
            f"{where} with longitude and latitude swapped: did you swap the {'/'.join(cols)} "
            f"columns? ({swap})"
        )
    return hints


def _in_region(lon: np.ndarray, lat: np.ndarray, region: Sequence[Sequence[float]]) -> np.ndarray:
    inside = np.zeros(lon.shape, dtype=bool)
    for lon0, lat0, lon1, lat1 in region:
        inside |= (lon >= lon0) & (lon <= lon1) & (lat >= lat0) & (lat <= lat1)
    return inside


def _check_crs(value: Any, what: str) -> str:
    """The CRS as a string pyproj accepts, or one InputError naming the argument."""
    from pyproj import CRS
    from pyproj.exceptions import CRSError

    try:
        return CRS.from_user_input(value).to_string()
    except CRSError as err:
        raise InputError(
            f"{what}={value!r} is not a CRS pyproj understands ({err}); give e.g. 'EPSG:3338'"
        ) from err


def _grid_contains(grid: Any, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Whether points fall on the grid (NaN points do not)."""
    ok = np.isfinite(x) & np.isfinite(y)
    return ok & grid.contains(np.where(ok, x, grid.left - 1.0), np.where(ok, y, grid.top + 1.0))


@functools.lru_cache(maxsize=32)
def _transformer(src: str, dst: str):
    from pyproj import Transformer

    return Transformer.from_crs(src, dst, always_xy=True)


def _project(a: np.ndarray, b: np.ndarray, src: str, dst: str) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype="float64"), np.asarray(b, dtype="float64")
    out_a = np.full(a.shape, np.nan)
    out_b = np.full(b.shape, np.nan)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.any():
        ta, tb = _transformer(src, dst).transform(a[ok], b[ok], errcheck=False)
        out_a[ok], out_b[ok] = ta, tb
    out_a[~np.isfinite(out_a)] = np.nan
    out_b[~np.isfinite(out_b)] = np.nan
    return out_a, out_b


def _sample_points(
    cube: Any, x: np.ndarray, y: np.ndarray, modalities: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Nearest-pixel values of each modality at points: modality -> ``(N, C)``, NaN outside.

    One vectorised (point-wise) index per modality and one ``dask.compute`` for all of them, so
    only the chunks holding a point are read. Public as :func:`miso_xr.training.features.sample_points`;
    it lives here because observations (a lower room) checks cube values at the points too.
    """
    import dask
    import xarray as xr

    from .cube.grid import Grid, band_dim, select_modalities

    mods = select_modalities(cube, modalities, require_any=False)
    xs = np.atleast_1d(np.asarray(x, dtype="float64"))
    ys = np.atleast_1d(np.asarray(y, dtype="float64"))
    if xs.shape != ys.shape or xs.ndim != 1:
        raise InputError(f"x and y must be 1-D of the same length; got {xs.shape} and {ys.shape}")
    grid = Grid.from_dataset(cube)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(xs) & np.isfinite(ys)
        row, col = grid.index(np.where(finite, xs, 0.0), np.where(finite, ys, 0.0))
    inside = finite & (row >= 0) & (row < grid.height) & (col >= 0) & (col < grid.width)
    idx = np.flatnonzero(inside)
    rows = xr.DataArray(row[idx], dims="point")
    cols = xr.DataArray(col[idx], dims="point")
    lazy = [
        cube[m].isel(y=rows, x=cols).transpose("point", band_dim(m)).data for m in mods
    ]  # (point, band), vectorised: dask reads only the chunks that hold a point
    values = dask.compute(*lazy) if idx.size else [None] * len(mods)
    out: dict[str, np.ndarray] = {}
    for m, v in zip(mods, values):
        arr = np.full((xs.size, cube[m].sizes[band_dim(m)]), np.nan, dtype="float32")
        if v is not None:
            arr[idx] = np.asarray(v, dtype="float32")
        out[m] = arr
    return out


def read_observations(
    source: str | os.PathLike[str] | pd.DataFrame,
    *,
    label: str | None = None,
    task: str | None = None,
    crs: str | None = None,
    x: str | None = None,
    y: str | None = None,
    to_crs: str = "EPSG:3338",
    cube: Any = None,
    classes: Sequence[str] | Mapping[Any, Any] | Callable[[Any], Any] | None = None,
    on_invalid: str = "drop",
) -> pd.DataFrame:
    """Read field observations into a validated table of points with class labels.

    Parameters
    ----------
    source
        A CSV/TSV, GeoJSON, GeoPackage, Shapefile, FlatGeobuf or Parquet file, or a
        (Geo)DataFrame. Coordinates come from point geometries, from lon/lat columns
        (``lon``/``lng``/``longitude`` and ``lat``/``latitude``, any case), or from projected
        columns with ``crs=``.
    label
        The label column (any case). Default: the first of ``label``, ``permafrost``,
        ``soil_order``, ``order``, ``taxorder``, ``class``.
    task
        ``"permafrost"`` (0/1, yes/no, true/false, present/absent -> ``["absent", "present"]``),
        ``"soil_order"`` (the 7 orders, any case, singular or plural), or a name of your own.
        Default: from the label column's name or values; the label column's name with ``classes=``.
    crs
        CRS of the coordinates when they are not lon/lat in WGS84 (or of a geometry without CRS).
    x, y
        Coordinate column names, when not found by name.
    to_crs
        CRS of the table's ``x``/``y`` when no cube is given (default Alaska Albers).
    cube
        A MISO cube: points are projected to its CRS, and points outside it, or where a
        modality has no value, are flagged; "lost minus sign" is judged against its footprint.
    classes
        A label set of your own: a list of class names (labels matched ignoring case), a mapping
        ``{raw label: class name}`` (``None`` as a class marks a row unlabelled), or a function
        ``raw label -> class name or None``. The classes' order is the model's output order.
    on_invalid
        ``"drop"`` (default): drop unusable rows and report them. ``"fix"``: also repair
        longitudes that lost their minus sign (negate them) instead of dropping those rows.
        ``"raise"``: raise :class:`~miso_xr.exceptions.ObservationError` if any row is unusable.

    Returns
    -------
    pandas.DataFrame
        ``x``, ``y``, ``lon``, ``lat`` (float64), ``label`` (Categorical), then the source's
        other columns; index = source row. ``attrs``: ``crs``, ``task``, ``classes``, ``report``
        (:class:`ObservationReport`, printable), ``source``.

    Raises
    ------
    ObservationError
        Unreadable file, missing columns, or nothing usable left (the message gives the counts).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"lon": [-147.7, 147.8, 0.0], "lat": [64.8, 64.9, 0.0],
    ...                    "permafrost": ["yes", "no", "yes"]})
    >>> obs = read_observations(df)
    >>> obs[["lon", "label"]].round(1).to_dict("list")
    {'lon': [-147.7], 'label': ['present']}
    >>> obs.attrs["report"].counts
    {'null_island': 1, 'lost_minus_sign': 1}
    """
    if on_invalid not in _ON_INVALID:
        raise InputError(f"on_invalid={on_invalid!r}: expected one of {list(_ON_INVALID)}")
    if crs is not None:
        crs = _check_crs(crs, "crs")
    df, name = _read_table(source)
    if len(df) == 0:
        raise ObservationError(f"observations from {name} have no rows")

    # coordinates
    if (x is None) != (y is None):
        raise ObservationError(f"give both x= and y= column names, not only one (x={x!r}, y={y!r})")
    if x is not None:
        for c in (x, y):
            if c not in df.columns:
                raise ObservationError(
                    f"coordinate column {c!r} is not in the observations; found "
                    f"{[str(k) for k in df.columns]}"
                )
        src = crs or "EPSG:4326"
        from pyproj import CRS

        a = pd.to_numeric(df[x], errors="coerce").to_numpy("float64")
        b = pd.to_numeric(df[y], errors="coerce").to_numpy("float64")
        geographic, used = CRS.from_user_input(src).is_geographic, [x, y]
    else:
        a, b, src, geographic, used = _coordinates(df, crs)

    _refuse_degrees_as_metres(a, b, src, geographic, used)

    # labels
    if label is None:
        label_col = _find_column(
            [c for c in df.columns if c not in used and c != "geometry"], _LABEL_NAMES
        )
        if label_col is None:
            raise ObservationError(
                f"observations from {name} have no label column: found "
                f"{[str(c) for c in df.columns]}; expected one of {list(_LABEL_NAMES)} "
                "(any case), or pass label='column name'"
            )
    else:
        label_col = _find_column(list(df.columns), [str(label).strip().lower()])
        if label_col is None:
            raise ObservationError(
                f"label column {label!r} is not in the observations from {name}; found "
                f"{[str(c) for c in df.columns]}"
            )
    raw = df[label_col]
    if task is None:
        task = str(label_col) if classes is not None else _infer_task(label_col, raw)
    elif classes is None:
        _check_task_name(str(task), label_col, raw)
    cats, mapper = _label_mapper(str(task), classes, raw)
    if mapper is None:  # classes given as a function: apply it to the raw values
        fn = classes
        mapped_vals = [None if _norm(v) is None else fn(v) for v in raw]  # type: ignore[misc, operator]
        mapped = np.array(
            [None if m is None or m != m else str(m) for m in mapped_vals], dtype=object
        )
        unknown_mask = np.array([m is not None and m not in cats for m in mapped])
        is_nan = np.array([m is None for m in mapped])
    else:
        normed = [_norm(v) for v in raw]
        mapped = np.array([None if s is None else mapper(s) for s in normed], dtype=object)
        has_raw = np.array([s is not None for s in normed])
        # a mapping may send a raw value to None on purpose: that row is unlabelled, not unknown
        none_keys = (
            {_norm(k) for k, v in classes.items() if v is None}
            if isinstance(classes, Mapping)
            else set()
        )
        explicit_none = np.array([s is not None and s in none_keys for s in normed], dtype=bool)
        unknown_mask = has_raw & np.array([m is None for m in mapped]) & ~explicit_none
        is_nan = ~has_raw | explicit_none

    # projections: lon/lat for the table, x/y in the cube's (or to_crs) CRS
    grid = None
    if cube is not None:
        from .cube.grid import Grid

        grid = Grid.from_dataset(cube)
        dst = grid.crs
    else:
        dst = _check_crs(to_crs, "to_crs")
    lon, lat = _project(a, b, src, "EPSG:4326")

    n = len(df)
    reason = np.full(n, "", dtype=object)

    def flag(mask: np.ndarray, why: str) -> None:
        reason[mask & (reason == "")] = why

    flag(~(np.isfinite(a) & np.isfinite(b)), "missing_coordinates")
    flag((a == 0) & (b == 0), "null_island")
    if geographic:
        flag((np.abs(a) > 180) | (np.abs(b) > 90), "out_of_range")
    else:
        flag(~(np.isfinite(lon) & np.isfinite(lat)), "out_of_range")

    # lost minus sign: a positive longitude whose negation lands where the study is and whose
    # own position does not (Alaska and BC longitudes are negative; a spreadsheet dropped the '-')
    fixed = np.zeros(n, dtype=bool)
    if geographic:
        pos = (reason == "") & (lon > 0)
        if grid is not None:
            here = _grid_contains(grid, *_project(lon, lat, "EPSG:4326", dst))
            there = _grid_contains(grid, *_project(-lon, lat, "EPSG:4326", dst))
        else:
            here = _in_region(lon, lat, STUDY_REGION)
            there = _in_region(-lon, lat, STUDY_REGION)
        lost = pos & there & ~here
        if on_invalid == "fix":
            # repaired rows go on through every later check like any other row
            fixed = lost
            lon = np.where(lost, -lon, lon)
            a = np.where(lost, -a, a)
        else:
            flag(lost, "lost_minus_sign")
    px, py = _project(a, b, src, dst)

    flag(unknown_mask, "unknown_label")

    if grid is not None:
        inside = _grid_contains(grid, px, py)
        flag(~inside, "outside_cube")
        check = np.flatnonzero(reason == "")
        if check.size:
            values = _sample_points(cube, px[check], py[check])
            empty = np.zeros(check.size, dtype=bool)
            for v in values.values():
                empty |= np.isnan(v).all(axis=1)
            nodata = np.zeros(n, dtype=bool)
            nodata[check[empty]] = True
            flag(nodata, "no_data")

    # duplicates among usable rows: same location (to 1 cm). One label there (other rows with
    # it, or with none): the first labelled row stays, the others merge into it. Two labels:
    # the labelled rows are dropped, an unlabelled one stays as an unlabelled point.
    usable = reason == ""
    idx_usable = np.flatnonzero(usable)
    if idx_usable.size:
        sub = pd.DataFrame(
            {
                "x": np.round(px[idx_usable], 2),
                "y": np.round(py[idx_usable], 2),
                "pos": idx_usable,
                "has": ~is_nan[idx_usable],
                "lab": [None if is_nan[i] else str(mapped[i]) for i in idx_usable],
            }
        )
        sub = sub[sub.duplicated(["x", "y"], keep=False)]
        for _, g in sub.groupby(["x", "y"], sort=False):
            pos, has = g["pos"].to_numpy(), g["has"].to_numpy()
            if len(set(g["lab"][has])) > 1:
                reason[pos[has]] = "conflicting_duplicate"
                rest = pos[~has]
                keep_one = rest[:1]
            else:
                keep_one = pos[has][:1] if has.any() else pos[:1]
                rest = pos
            reason[rest[~np.isin(rest, keep_one)]] = "duplicate"
    keep = reason == ""
    report = ObservationReport(source=name, task=str(task), classes=tuple(cats), n_input=n)
    if classes is None and str(task) not in ("permafrost", "soil_order"):
        report.notes.append(
            f"labels of your own: task {str(task)!r} with classes {list(cats)} (the values of "
            f"column {str(label_col)!r}, sorted); pass classes=[...] to choose them and their order"
        )
    examples_src = {c: df[c].to_numpy() for c in used if c != "geometry"}
    for why in REASONS:
        if why == "unlabelled":
            m, action = keep & is_nan, "kept"
        elif why == "lost_minus_sign" and on_invalid == "fix":
            m, action = fixed, "fixed"
        elif why == "duplicate":  # the same observation again: merged into the row kept
            m, action = reason == why, "merged"
        else:
            m, action = reason == why, "dropped"
        if m.any():
            report.counts[why] = int(m.sum())
            report.actions[why] = action
            exs = []
            for i in np.flatnonzero(m)[:3]:
                ex: dict[str, Any] = {"row": df.index[i]}
                for c, vals in examples_src.items():
                    ex[str(c)] = vals[i]
                if "geometry" in used:
                    ex["lon"], ex["lat"] = float(lon[i]), float(lat[i])
                ex[str(label_col)] = raw.iloc[i]
                exs.append(ex)
            report.examples[why] = exs
    # unknown labels of the rows dropped for them, not of rows already dropped for coordinates
    unknown_rows = reason == "unknown_label"
    if unknown_rows.any():
        vals = pd.Series([str(v) for v in raw[unknown_rows]]).value_counts()
        report.unknown_labels = {str(k): int(v) for k, v in vals.items()}
    # one line per (row, reason): a repaired row may be flagged again later (e.g. merged)
    parts = [(fixed, "lost_minus_sign"), (keep & is_nan, "unlabelled")]
    parts += [(reason == r, r) for r in REASONS if r not in ("unlabelled",)]
    pos = [np.flatnonzero(m) for m, _ in parts]
    whys = [np.full(p.size, r, dtype=object) for p, (_, r) in zip(pos, parts)]
    pos_all, why_all = np.concatenate(pos), np.concatenate(whys)
    order = np.argsort(pos_all, kind="stable")
    report.rows = pd.DataFrame(
        {
            "reason": why_all[order],
            "action": [report.actions.get(str(r), "") for r in why_all[order]],
        },
        index=pd.Index(df.index[pos_all[order]], name="row"),
    )
    report.hints = _coordinate_hints(a, b, geographic, used, reason, grid, dst)
    report.n_kept = int(keep.sum())
    report.n_labelled = int((keep & ~is_nan).sum())

    if on_invalid == "raise":
        bad = {r: c for r, c in report.counts.items() if report.actions[r] == "dropped"}
        if bad:
            raise ObservationError(
                f"observations from {name} have unusable rows ({bad}); fix them or pass "
                f"on_invalid='drop' to drop them (or 'fix' to repair lost minus signs).\n"
                f"{report}"
            )

    labels = pd.Categorical(
        [None if is_nan[i] else mapped[i] for i in np.flatnonzero(keep)], categories=list(cats)
    )
    others = [c for c in df.columns if c not in used and c != label_col and c != "geometry"]
    out = pd.DataFrame(
        {
            "x": px[keep],
            "y": py[keep],
            "lon": lon[keep],
            "lat": lat[keep],
            "label": labels,
        },
        index=df.index[keep],
    )
    for c in others:
        name_c = str(c) if str(c) not in out.columns else f"{c}_source"
        out[name_c] = pd.DataFrame(df[c]).iloc[np.flatnonzero(keep), 0].to_numpy()
    report.class_counts = {str(k): int(v) for k, v in out["label"].value_counts(sort=False).items()}
    if report.n_labelled == 0:
        raise ObservationError(
            f"no usable labelled observation left in {name}: {n} rows read, "
            f"{report.n_kept} kept, {report.n_labelled} labelled; "
            + ", ".join(f"{r}: {c}" for r, c in report.counts.items())
            + (
                f". Unknown labels: {list(report.unknown_labels)[:10]}; pass classes= to map them"
                if report.unknown_labels
                else ""
            )
            + f".\n{report}"
        )
    out.attrs.update(
        {"crs": dst, "task": str(task), "classes": list(cats), "report": report, "source": name}
    )
    return out
