"""read_observations: formats, label sets, the dirty-data checks and their report, and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from miso_xr.cube.grid import Grid, make_cube
from miso_xr.exceptions import InputError, MissingBandError, ObservationError
from miso_xr.observations import (
    PERMAFROST_CLASSES,
    SOIL_ORDERS,
    ObservationReport,
    read_observations,
)
from miso_xr.training.features import points_xy, sample_points


def _dirty_permafrost() -> pd.DataFrame:
    """Rows each hitting one known problem (in the order read_observations checks them)."""
    return pd.DataFrame(
        {
            "ID": list(range(12)),
            "Longitude": [
                -147.70,
                -147.80,
                147.90,
                0.0,
                -147.60,
                np.nan,
                -190.0,
                -147.50,
                -147.50,
                -147.40,
                -147.40,
                -148.00,
            ],
            "LATITUDE": [
                64.80,
                64.85,
                64.90,
                0.0,
                64.70,
                64.0,
                64.0,
                64.60,
                64.60,
                64.55,
                64.55,
                65.00,
            ],
            "permafrost": [
                "Yes",
                "no",
                "1",
                "yes",
                "maybe",
                "0",
                "1",
                "true",
                "TRUE",
                "present",
                "absent",
                None,
            ],
        }
    )


def test_permafrost_labels_checks_and_report():
    df = _dirty_permafrost()
    obs = read_observations(df)
    rep = obs.attrs["report"]
    assert isinstance(rep, ObservationReport)
    assert list(obs.columns[:5]) == ["x", "y", "lon", "lat", "label"]
    assert obs["label"].dtype == "category"
    assert tuple(obs["label"].cat.categories) == PERMAFROST_CLASSES
    assert obs.attrs["task"] == "permafrost" and obs.attrs["crs"] == "EPSG:3338"
    assert rep.counts == {
        "missing_coordinates": 1,
        "null_island": 1,
        "out_of_range": 1,
        "lost_minus_sign": 1,
        "unknown_label": 1,
        "duplicate": 1,
        "conflicting_duplicate": 2,
        "unlabelled": 1,
    }
    assert rep.actions["lost_minus_sign"] == "dropped" and rep.actions["unlabelled"] == "kept"
    assert rep.unknown_labels == {"maybe": 1}
    # kept: rows 0, 1, 7 (first of the duplicates), 11 (unlabelled); index = source rows
    assert obs.index.tolist() == [0, 1, 7, 11]
    assert obs["label"].astype(object).where(obs["label"].notna(), None).tolist() == [
        "present",
        "absent",
        "present",
        None,
    ]
    assert obs["ID"].tolist() == [0, 1, 7, 11]  # other columns follow
    assert rep.n_input == 12 and rep.n_kept == 4 and rep.n_labelled == 3
    text = str(rep)
    for reason in rep.counts:
        assert reason in text
    assert "'maybe'" in text and "row=2" in text  # names the unknown label and an example row
    assert "lost_minus_sign" in rep.to_frame()["reason"].tolist()
    # x/y are EPSG:3338 projections of lon/lat
    from pyproj import Transformer

    tx, ty = Transformer.from_crs("EPSG:4326", "EPSG:3338", always_xy=True).transform(
        obs["lon"].to_numpy(), obs["lat"].to_numpy()
    )
    np.testing.assert_allclose(obs["x"], tx)
    np.testing.assert_allclose(obs["y"], ty)


def test_fix_repairs_lost_minus_sign_and_raise_refuses():
    df = _dirty_permafrost()
    fixed = read_observations(df, on_invalid="fix")
    rep = fixed.attrs["report"]
    assert rep.actions["lost_minus_sign"] == "fixed" and rep.counts["lost_minus_sign"] == 1
    assert 2 in fixed.index and fixed.loc[2, "lon"] == pytest.approx(-147.90)
    assert (fixed["lon"] < 0).all()
    with pytest.raises(ObservationError, match="unusable rows") as err:
        read_observations(df, on_invalid="raise")
    assert "null_island" in str(err.value) and "on_invalid='drop'" in str(err.value)
    with pytest.raises(InputError, match="on_invalid='oops'"):
        read_observations(df, on_invalid="oops")


def test_western_aleutians_keep_their_positive_longitude():
    # Attu (172.9 E) is truly east of the antimeridian: not a lost minus sign
    df = pd.DataFrame({"lon": [172.9, -150.0], "lat": [52.9, 61.0], "permafrost": [0, 1]})
    obs = read_observations(df)
    assert "lost_minus_sign" not in obs.attrs["report"].counts
    assert obs["lon"].tolist() == [172.9, -150.0]


def test_soil_order_spellings_and_user_label_sets():
    df = pd.DataFrame(
        {
            "lon": [-150.0, -150.1, -150.2, -150.3, -150.4],
            "lat": [61.0, 61.1, 61.2, 61.3, 61.4],
            "Soil_Order": ["gelisol", "GELISOLS", " Spodosols ", "histosol", "Oxisols"],
        }
    )
    obs = read_observations(df)
    assert obs.attrs["task"] == "soil_order"
    assert tuple(obs["label"].cat.categories) == SOIL_ORDERS
    assert obs["label"].tolist() == ["Gelisols", "Gelisols", "Spodosols", "Histosols"]
    assert obs.attrs["report"].unknown_labels == {"Oxisols": 1}

    # a user label set: a list (matched ignoring case), a mapping, a function
    lc = pd.DataFrame(
        {
            "lon": [-150.0, -150.1, -150.2],
            "lat": [61.0, 61.1, 61.2],
            "cover": ["Forest", "tundra", "water"],
        }
    )
    obs = read_observations(lc, label="cover", classes=["tundra", "forest"])
    assert obs.attrs["task"] == "cover" and tuple(obs["label"].cat.categories) == (
        "tundra",
        "forest",
    )
    assert obs["label"].tolist() == ["forest", "tundra"]
    obs = read_observations(
        lc, label="cover", classes={"forest": "trees", "tundra": "open", "water": None}
    )
    assert tuple(obs["label"].cat.categories) == ("trees", "open")
    assert obs["label"].isna().sum() == 1 and "unknown_label" not in obs.attrs["report"].counts
    obs = read_observations(
        lc, label="cover", task="landcover", classes=lambda v: "wet" if v == "water" else "dry"
    )
    assert obs.attrs["task"] == "landcover" and set(obs["label"]) == {"wet", "dry"}


def test_formats_geojson_gpkg_and_projected(tmp_path):
    import geopandas as gpd

    df = pd.DataFrame({"lon": [-147.7, -150.0], "lat": [64.8, 61.2], "permafrost": [1, 0]})
    gdf = gpd.GeoDataFrame(
        df[["permafrost"]], geometry=gpd.points_from_xy(df.lon, df.lat), crs="EPSG:4326"
    )
    ref = read_observations(df)
    for name in ("points.geojson", "points.gpkg"):
        path = tmp_path / name
        gdf.to_file(path, engine="pyogrio")
        obs = read_observations(path)
        np.testing.assert_allclose(obs[["x", "y"]].to_numpy(), ref[["x", "y"]].to_numpy())
        assert obs["label"].tolist() == ["present", "absent"]
    csv = tmp_path / "points.csv"
    df.to_csv(csv, index=False)
    assert read_observations(csv)["label"].tolist() == ["present", "absent"]
    # projected x/y with crs=, written back to another CRS
    proj = pd.DataFrame({"E": ref["x"], "N": ref["y"], "permafrost": [1, 0]})
    obs = read_observations(proj, x="E", y="N", crs="EPSG:3338", to_crs="EPSG:32606")
    np.testing.assert_allclose(obs[["lon", "lat"]].to_numpy(), df[["lon", "lat"]].to_numpy())
    assert obs.attrs["crs"] == "EPSG:32606"


def test_errors_name_the_input(tmp_path):
    with pytest.raises(ObservationError, match="does not exist"):
        read_observations(tmp_path / "nope.csv")
    bad = tmp_path / "points.xlsx"
    bad.write_text("x")
    with pytest.raises(ObservationError, match=r"suffix '\.xlsx'"):
        read_observations(bad)
    with pytest.raises(
        ObservationError, match=r"found \['a', 'b', 'permafrost'\]; expected lon/lat"
    ):
        read_observations(pd.DataFrame({"a": [1], "b": [2], "permafrost": [1]}))
    with pytest.raises(ObservationError, match="pass crs="):
        read_observations(pd.DataFrame({"x": [1.0], "y": [2.0], "permafrost": [1]}))
    with pytest.raises(ObservationError, match="no label column.*found"):
        read_observations(pd.DataFrame({"lon": [-150.0], "lat": [61.0], "depth": [3]}))
    with pytest.raises(ObservationError, match="label column 'pf' is not in"):
        read_observations(pd.DataFrame({"lon": [-150.0], "lat": [61.0]}), label="pf")
    with pytest.raises(ObservationError, match="cannot tell the task"):
        read_observations(
            pd.DataFrame({"lon": [-150.0, -150.1], "lat": [61.0, 61.1], "label": [3, 7]})
        )
    with pytest.raises(ObservationError, match="at least two distinct class names"):
        read_observations(
            pd.DataFrame({"lon": [-150.0], "lat": [61.0], "c": ["a"]}), label="c", classes=["a"]
        )
    ok = pd.DataFrame({"lon": [-150.0, -150.1], "lat": [61.0, 61.1], "permafrost": [0, 1]})
    with pytest.raises(InputError, match="to_crs='EPSG:99999' is not a CRS"):
        read_observations(ok, to_crs="EPSG:99999")
    with pytest.raises(InputError, match="crs='nonsense' is not a CRS"):
        read_observations(ok, crs="nonsense")
    # nothing usable: the counts are in the message
    with pytest.raises(ObservationError, match="1 rows read.*null_island: 1"):
        read_observations(pd.DataFrame({"lon": [0.0], "lat": [0.0], "permafrost": [1]}))


def _cube_over(lon: float, lat: float, *, size: int = 40, res: float = 50.0, chunks: int = 16):
    from pyproj import Transformer

    cx, cy = Transformer.from_crs("EPSG:4326", "EPSG:3338", always_xy=True).transform(lon, lat)
    grid = Grid("EPSG:3338", cx - size * res / 2, cy + size * res / 2, res, size, size)
    cov = np.random.default_rng(0).random((2, size, size)).astype("float32")
    cov[:, :5, :5] = np.nan  # a nodata corner
    return make_cube({"covariates": (cov, ["elevation", "slope"])}, grid, chunks=chunks), grid


def test_cube_checks_outside_nodata_and_minus_sign():
    cube, grid = _cube_over(-147.7, 64.8)
    xs = grid.x[[10, 20, 2, 30]]
    ys = grid.y[[10, 20, 2, 30]]
    from pyproj import Transformer

    lon, lat = Transformer.from_crs("EPSG:3338", "EPSG:4326", always_xy=True).transform(xs, ys)
    lon = np.append(lon, [-140.0, -lon[3]])  # far away; the last one lost its minus sign
    lat = np.append(lat, [64.8, lat[3]])
    df = pd.DataFrame(
        {"lon": lon[[0, 1, 2, 4, 5]], "lat": lat[[0, 1, 2, 4, 5]], "permafrost": [1, 0, 1, 1, 0]}
    )
    obs = read_observations(df, cube=cube)
    rep = obs.attrs["report"]
    assert rep.counts == {"lost_minus_sign": 1, "outside_cube": 1, "no_data": 1}
    assert obs.index.tolist() == [0, 1]
    np.testing.assert_allclose(obs["x"], xs[:2])
    obs = read_observations(df, cube=cube, on_invalid="fix")
    assert obs.index.tolist() == [0, 1, 4]
    np.testing.assert_allclose(obs["x"], xs[[0, 1, 3]], atol=1e-6)
    # the cube's CRS wins over to_crs
    assert obs.attrs["crs"] == grid.crs


def test_sample_points_nearest_pixel_one_compute(raise_if_dask_computes):
    cube, grid = _cube_over(-147.7, 64.8, size=32, chunks=8)
    values = cube["covariates"].values
    rows = np.array([6, 31, 0, 17])
    cols = np.array([9, 0, 31, 17])
    # points anywhere inside a pixel read that pixel
    jitter = np.array([0.4, -0.49, 0.0, 0.2]) * grid.resolution
    x = np.append(grid.x[cols] + jitter, grid.bounds[2] + 1.0)
    y = np.append(grid.y[rows] - jitter, grid.y[0])
    with raise_if_dask_computes(1):
        got = sample_points(cube, x, y)
    assert got["covariates"].shape == (5, 2) and got["covariates"].dtype == np.float32
    np.testing.assert_array_equal(got["covariates"][:4], values[:, rows, cols].T)
    assert np.isnan(got["covariates"][4]).all()
    with pytest.raises(MissingBandError, match="no modality 'optical'"):
        sample_points(cube, x, y, modalities=["optical"])
    with pytest.raises(InputError, match="same length"):
        sample_points(cube, x, y[:2])


def test_sample_points_reads_only_needed_chunks():
    import dask.array as da

    from miso_xr.cube.grid import Grid

    grid = Grid("EPSG:3338", 0.0, 6400.0, 10.0, 640, 640)
    arr = da.random.random((1, 640, 640), chunks=(1, 64, 64)).astype("float32")
    cube = make_cube({"covariates": (arr, ["elevation"])}, grid)
    lazy = (
        cube["covariates"]
        .isel(
            y=__import__("xarray").DataArray([5, 6], dims="point"),
            x=__import__("xarray").DataArray([5, 600], dims="point"),
        )
        .data
    )
    from dask.optimization import cull

    dsk = dict(lazy.__dask_graph__())
    culled, _ = cull(dsk, lazy.__dask_keys__())
    random_chunks = [k for k in culled if isinstance(k, tuple) and "random" in str(k[0])]
    assert len(random_chunks) == 2  # 2 of the 100 source chunks
    got = sample_points(cube, [55.0, 6005.0], [6345.0, 6335.0])["covariates"][:, 0]
    np.testing.assert_array_equal(got, cube["covariates"].values[0, [5, 6], [5, 600]])


def test_points_xy_reprojects():
    obs = read_observations(
        pd.DataFrame({"lon": [-147.7], "lat": [64.8], "permafrost": [1]}), to_crs="EPSG:32606"
    )
    x, y = points_xy(obs, "EPSG:3338")
    ref = read_observations(pd.DataFrame({"lon": [-147.7], "lat": [64.8], "permafrost": [1]}))
    np.testing.assert_allclose([x[0], y[0]], ref[["x", "y"]].to_numpy()[0])


# --------------------------------------------------------------------- real data
def _canadian_order(name: str) -> str | None:
    """Canadian soil order of a (great) group name, as a user label set."""
    n = name.lower()
    for key, order in (
        ("podz", "Podzolic"),
        ("podoz", "Podzolic"),
        ("bruni", "Brunisolic"),
        ("burni", "Brunisolic"),
        ("regos", "Regosolic"),
        ("gleys", "Gleysolic"),
        ("luvis", "Luvisolic"),
    ):
        if key in n:
            return order
    if any(k in n for k in ("organic", "folisol", "humisol", "mesisol", "cryo")):
        return "Organic"
    return None


def test_real_pedons_lost_minus_signs(shared_data):
    path = shared_data / "npctr_pedons_mcnicol" / "NPCTRPedonTable.csv"
    raw = pd.read_csv(path)
    positive = int((raw["lon"] > 0).sum())
    zeros = int(((raw["lon"] == 0) & (raw["lat"] == 0)).sum())
    assert positive > 900 and zeros > 0  # the dirt the data README describes

    # default soil-order task: Canadian orders are unknown, and the error says so with counts
    with pytest.raises(
        ObservationError, match="Unknown labels: .*'Ferro-Humic Podzol'.*pass classes="
    ):
        read_observations(path, label="order")

    obs = read_observations(path, label="order", classes=_canadian_order)
    rep = obs.attrs["report"]
    assert rep.counts["null_island"] == zeros
    # every positive longitude but those whose negation is outside the study area is flagged
    assert positive - 5 <= rep.counts["lost_minus_sign"] <= positive
    # without a cube only coordinates are judged: a positive longitude whose negation is not in
    # the study area either (lon 25 E) is kept as given; a cube would drop it (next test)
    stray = raw.index[(raw["lon"] > 0) & (raw["lon"] < 100)]
    assert ((obs["lon"] < 0) | obs.index.isin(stray)).all()
    assert set(obs["label"].cat.categories) >= {"Podzolic", "Brunisolic", "Organic"}
    assert "lost_minus_sign" in str(rep)

    fixed = read_observations(path, label="order", classes=_canadian_order, on_invalid="fix")
    frep = fixed.attrs["report"]
    assert frep.counts["lost_minus_sign"] == rep.counts["lost_minus_sign"]
    assert len(fixed) > 3 * len(obs)
    repaired = fixed.index.intersection(raw.index[raw["lon"] > 100])
    np.testing.assert_allclose(fixed.loc[repaired, "lon"], -raw.loc[repaired, "lon"])
    # repaired points land in coastal BC / SE Alaska, where the pedons were dug
    inside = fixed.loc[repaired]
    assert ((inside["lon"] > -140) & (inside["lon"] < -114)).mean() > 0.99
    assert ((inside["lat"] > 47) & (inside["lat"] < 61)).mean() > 0.99
    # same site, different order: reported, and no location is left twice
    assert frep.counts.get("conflicting_duplicate", 0) > 0
    assert not fixed[["x", "y"]].round(2).duplicated().any()


def test_real_pedons_against_a_cube(shared_data):
    path = shared_data / "npctr_pedons_mcnicol" / "NPCTRPedonTable.csv"
    raw = pd.read_csv(path)
    # a cube over Haida Gwaii only: the other (fixed) pedons are outside it
    cube, grid = _cube_over(-132.0, 53.5, size=64, res=2000.0)
    obs = read_observations(
        path, label="order", classes=_canadian_order, cube=cube, on_invalid="fix"
    )
    rep = obs.attrs["report"]
    assert rep.counts["outside_cube"] > 0 and len(obs) > 0
    assert grid.contains(obs["x"].to_numpy(), obs["y"].to_numpy()).all()
    # the row at lon 25 E (not a lost sign: its negation is in the Atlantic) is outside the cube
    stray = raw.index[(raw["lon"] > 0) & (raw["lon"] < 100)]
    assert len(stray) and not set(stray) & set(obs.index)


def test_unknown_string_labels_become_a_label_set_of_your_own_sorted_and_reported():
    df = pd.DataFrame(
        {
            "lon": [-150.0, -150.1, -150.2, -150.3],
            "lat": [61.0, 61.1, 61.2, 61.3],
            "vegetation": ["tundra", "Forest", "shrub", "forest"],
        }
    )
    obs = read_observations(df, label="vegetation")
    assert obs.attrs["task"] == "vegetation"
    assert list(obs["label"].cat.categories) == ["forest", "shrub", "tundra"]
    assert list(obs["label"]) == ["tundra", "forest", "shrub", "forest"]
    assert obs.attrs["classes"] == ["forest", "shrub", "tundra"]
    text = str(obs.attrs["report"])
    assert (
        "labels of your own: task 'vegetation' with classes ['forest', 'shrub', 'tundra']" in text
    )
    assert "sorted" in text
    # a built-in task says nothing of the kind
    pf = read_observations(df.assign(permafrost=[0, 1, 1, 0]), label="permafrost")
    assert pf.attrs["report"].notes == []


# ---- issue 11: typos, duplicates, the full list of flagged rows, coordinate hints ----------


def test_task_name_typo_is_refused_with_the_labels_found():
    df = pd.DataFrame({"lon": [-147.7, -147.6], "lat": [64.8, 64.9], "pf": [0, 1]})
    with pytest.raises(ObservationError, match=r"task 'permafrst'.*did you mean 'permafrost'") as e:
        read_observations(df, label="pf", task="permafrst")
    assert "column 'pf' are ['0', '1']" in str(e.value)
    # a task name of one's own, far from the built-in ones, is still a task of its own
    obs = read_observations(df, label="pf", task="ice_wedges")
    assert list(obs["label"].cat.categories) == ["0", "1"]


def test_duplicates_keep_the_labelled_row_and_raise_accepts_them():
    lon = [-147.7, -147.7, -147.6, -147.6, -147.5, -147.5, -147.5, -147.4]
    lat = [64.8, 64.8, 64.9, 64.9, 65.0, 65.0, 65.0, 65.1]
    pf = [None, "yes", "no", None, "yes", "no", None, "no"]
    df = pd.DataFrame({"lon": lon, "lat": lat, "permafrost": pf})
    obs = read_observations(df)
    rep = obs.attrs["report"]
    # an unlabelled row at a labelled pedon's place merges into it, whichever comes first
    assert obs.loc[1, "label"] == "present" and obs.loc[2, "label"] == "absent"
    assert 0 not in obs.index and 3 not in obs.index
    # two labels at one place: the labelled rows go, the unlabelled point stays
    assert rep.counts["conflicting_duplicate"] == 2 and 6 in obs.index
    assert pd.isna(obs.loc[6, "label"])
    assert rep.counts["duplicate"] == 2 and rep.actions["duplicate"] == "merged"
    # exact duplicates are merged, not refused; conflicts are refused with true counts
    clean = df.drop(index=[4, 5])
    assert len(read_observations(clean, on_invalid="raise")) == 4
    with pytest.raises(ObservationError, match=r"conflicting_duplicate': 2") as e:
        read_observations(df, on_invalid="raise")
    assert "8 rows read, 4 kept (3 labelled), 2 dropped, 2 merged" in str(e.value)


def test_report_rows_list_every_flagged_row_and_unknown_counts_are_of_their_rows():
    df = _dirty_permafrost()
    df.loc[6, "permafrost"] = "maybe"  # a row already dropped for its coordinates, bad label too
    obs = read_observations(df)
    rep = obs.attrs["report"]
    # the unknown label of a row dropped for out-of-range coordinates is not counted twice
    assert rep.unknown_labels == {"maybe": rep.counts["unknown_label"]}
    rows = rep.rows
    assert rows.index.name == "row" and list(rows.columns) == ["reason", "action"]
    assert rows["reason"].value_counts().to_dict() == rep.counts
    dropped = set(rows.index[rows["action"].isin(["dropped", "merged"])])
    assert dropped == set(df.index) - set(obs.index)
    assert "report.rows" in str(rep)


def _alaska(n: int = 6) -> tuple[np.ndarray, np.ndarray]:
    return -147.7 + 0.002 * np.arange(n), 64.8 + 0.002 * np.arange(n)


def test_swapped_lon_lat_columns_get_a_hint():
    lon, lat = _alaska()
    df = pd.DataFrame({"lon": lat, "lat": lon, "permafrost": [0, 1] * 3})  # swapped
    with pytest.raises(
        ObservationError, match=r"did you swap the lon/lat columns\? \(pass x='lat', y='lon'\)"
    ):
        read_observations(df)
    obs = read_observations(df, x="lat", y="lon")  # the fix the hint gives
    np.testing.assert_allclose(obs["lon"], lon)
    # with a cube: swapped points are off the cube, and the hint says they fit once swapped
    cube, grid = _cube_over(-147.7, 64.8, size=64, res=100.0)
    df = pd.DataFrame(
        {"lon": np.r_[lat, -147.68], "lat": np.r_[lon, 64.82], "pf": [0, 1] * 3 + [1]}
    )
    obs = read_observations(df, label="pf", cube=cube)
    hints = obs.attrs["report"].hints
    assert len(obs) == 1 and any(
        "inside the cube with longitude and latitude swapped" in h for h in hints
    )


def test_projected_columns_without_crs_and_degrees_with_a_projected_crs():
    from pyproj import Transformer

    lon, lat = _alaska()
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3338", always_xy=True).transform(lon, lat)
    df = pd.DataFrame({"lon": x, "lat": y, "permafrost": [0, 1] * 3})  # metres under lon/lat
    with pytest.raises(ObservationError, match=r"projected metres, not degrees\. Pass crs="):
        read_observations(df)
    np.testing.assert_allclose(read_observations(df, crs="EPSG:3338")["lon"], lon)
    df = pd.DataFrame({"lon": lon, "lat": lat, "permafrost": [0, 1] * 3})
    with pytest.raises(
        ObservationError,
        match=r"lon/lat values look like longitude/latitude in degrees.*crs='EPSG:3338' is projected",
    ):
        read_observations(df, x="lon", y="lat", crs="EPSG:3338")


def test_real_pedons_report_counts_and_rows(shared_data):
    path = shared_data / "npctr_pedons_mcnicol" / "NPCTRPedonTable.csv"
    raw = pd.read_csv(path)
    obs = read_observations(path, label="order", classes=_canadian_order, on_invalid="fix")
    rep = obs.attrs["report"]
    rows = rep.rows
    assert rows["reason"].value_counts().to_dict() == rep.counts
    gone = set(rows.index[rows["action"].isin(["dropped", "merged"])])
    assert gone == set(raw.index) - set(obs.index)
    # no labelled pedon is lost to an unlabelled one at the same site
    lon = raw["lon"].where(raw["lon"] < 0, -raw["lon"])  # what on_invalid="fix" did
    sites = pd.DataFrame(
        {
            "site": list(zip(lon.round(5), raw["lat"].round(5))),
            "known": [_canadian_order(v) if pd.notna(v) else None for v in raw["order"]],
            "why": rows[rows["reason"] != "lost_minus_sign"]["reason"]
            .reindex(raw.index)
            .fillna(""),
        }
    )
    mixed = 0
    for _, g in sites.groupby("site"):
        if len(g) < 2 or not set(g["why"]) <= {"", "duplicate", "unlabelled"}:
            continue
        if g["known"].notna().any() and g["known"].isna().any():
            mixed += 1
            kept = obs.index.intersection(g.index)
            assert len(kept) == 1 and pd.notna(obs.loc[kept[0], "label"]), g
    assert mixed > 0  # the real file has such sites
    soil = read_observations(
        path,
        label="order",
        classes={"Podzolic": "Spodosols", "Organic": "Histosols"},
        on_invalid="fix",
    )
    srep = soil.attrs["report"]
    assert sum(srep.unknown_labels.values()) == srep.counts["unknown_label"]
