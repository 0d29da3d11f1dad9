"""Real STAC metadata (Planetary Computer, Earth Search) gives the right lazy cube, reading no pixel.

The assets of these items point to the cloud: nothing here may compute. Every cube is built under
a dask scheduler that fails on any compute, and only metadata (dims, coords, CRS, dtype) is checked.
"""

from __future__ import annotations

import json

import numpy as np
import pystac
import pytest

from miso_xr.cube.grid import Grid
from miso_xr.cube.stac import ASSET_KEYS, OPTICAL_BANDS, SAR_BANDS, grid_for_bbox, open_stac
from miso_xr.cube.terrain import TERRAIN_BANDS
from miso_xr.exceptions import MissingBandError, NoItemsFoundError


@pytest.fixture(scope="module")
def fixtures(shared_data):
    return shared_data / "stac_fixtures"


def load(path):
    return json.loads(path.read_text())


def check_cube(cube, grid: Grid, modality: str, bands) -> None:
    dim = f"{modality}_band"
    assert cube[modality].dims == (dim, "y", "x")
    assert list(cube[dim].values) == list(bands)
    assert cube[modality].dtype == np.float32
    assert cube[modality].chunks is not None  # dask-backed, lazy
    np.testing.assert_array_equal(cube.x.values, grid.x)
    np.testing.assert_array_equal(cube.y.values, grid.y)
    assert cube.rio.crs.to_epsg() == int(grid.crs.split(":")[1])
    assert Grid.from_dataset(cube) == grid


def test_pc_item_over_alaska_via_pystac(fixtures, raise_if_dask_computes):
    path = fixtures / "items" / "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531.json"
    item = pystac.Item.from_file(path)
    # the trap: pystac 1.15 moved proj:epsg to proj:code, which stackstac 0.5.1 cannot read
    d = item.to_dict(transform_hrefs=False)  # True would resolve the root link online
    assert "proj:epsg" not in d["properties"] and d["properties"]["proj:code"] == "EPSG:32606"
    bbox = (-147.9, 60.8, -147.8, 60.85)
    with raise_if_dask_computes():
        cube = open_stac(
            bbox=bbox,
            datetime="2019-06-01/2019-07-31",
            items=[item],
            modalities=("optical",),
            crs="EPSG:3338",
            resolution=10,
            chunks=256,
            season=("06-15", "08-15"),
        )
    grid = grid_for_bbox(bbox, crs="EPSG:3338", resolution=10)
    check_cube(cube, grid, "optical", OPTICAL_BANDS)
    assert cube["optical"].data.chunksize == (9, 256, 256)
    assert cube["optical"].attrs["scenes"] == 1


def test_pc_item_with_raster_extension(fixtures, raise_if_dask_computes):
    path = (
        fixtures
        / "items"
        / "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531_raster_ext.json"
    )
    bbox = (-147.9, 60.8, -147.85, 60.82)
    with raise_if_dask_computes():
        cube = open_stac(
            bbox=bbox,
            datetime=None,
            items=[load(path)],
            modalities=("optical",),
            crs="EPSG:32606",
            resolution=20,
            chunks=64,
        )
    check_cube(cube, grid_for_bbox(bbox, crs="EPSG:32606", resolution=20), "optical", OPTICAL_BANDS)


def test_pc_item_collection_mixed_utm_zones(fixtures, raise_if_dask_computes):
    """33 items in UTM 58N-60N: reprojected onto one grid, not 'Cannot pick a common CRS'."""
    ic = pystac.ItemCollection.from_file(
        fixtures / "items" / "pc__sentinel-2-l2a.itemcollection.json"
    )
    epsgs = {it.properties.get("proj:code") for it in ic}
    assert len(epsgs) == 3
    bbox = (172.0, 57.5, 173.5, 58.0)  # where tiles of 59V and 60V meet
    with raise_if_dask_computes():
        cube = open_stac(
            bbox=bbox,
            datetime="2019-01-01",
            items=ic,
            modalities=("optical",),
            crs="EPSG:32660",
            resolution=60,
            chunks=512,
            max_cloud=None,
        )
    check_cube(cube, grid_for_bbox(bbox, crs="EPSG:32660", resolution=60), "optical", OPTICAL_BANDS)
    assert 1 < cube["optical"].attrs["scenes"] < 33  # only the tiles overlapping the bbox


def test_earth_search_names_map_to_canonical_bands(fixtures, raise_if_dask_computes):
    items = load(fixtures / "items" / "earthsearch__sentinel-2-l2a.itemcollection.json")
    bbox = (-105.5, 40.0, -105.45, 40.03)  # tile 13TDE
    with raise_if_dask_computes():
        cube = open_stac(
            bbox=bbox,
            datetime="2023-10-01/2023-10-31",
            items=items,
            modalities=("optical",),
            crs="EPSG:32613",
            resolution=10,
            chunks=128,
            max_cloud=None,
        )
    check_cube(cube, grid_for_bbox(bbox, crs="EPSG:32613", resolution=10), "optical", OPTICAL_BANDS)
    assert cube["optical"].attrs["scenes"] == 1


def test_cop_dem_tiles_give_lazy_terrain(fixtures, raise_if_dask_computes):
    items = load(fixtures / "items" / "earthsearch__cop-dem-glo-30.itemcollection.json")
    bbox = (-179.9, -89.6, -178.2, -89.5)  # across two 1-degree tiles near the South Pole
    with raise_if_dask_computes():
        cube = open_stac(
            bbox=bbox,
            datetime=None,
            items=items,
            modalities=("covariates",),
            crs="EPSG:3031",
            resolution=30,
            chunks=256,
        )
    check_cube(
        cube, grid_for_bbox(bbox, crs="EPSG:3031", resolution=30), "covariates", TERRAIN_BANDS
    )
    # near the pole the tiles' projected boxes all touch the grid: stackstac keeps them all
    assert 2 <= cube["covariates"].attrs["dem_tiles"] <= 10


def test_items_without_assets_name_what_is_missing(fixtures):
    items = load(fixtures / "items" / "earthsearch__sentinel-2-c1-l2a.itemcollection.json")
    no_assets = [d for d in items["features"] if not d.get("assets")]
    assert no_assets  # the recorded responses were trimmed to metadata
    with pytest.raises(MissingBandError, match=r"'B04'.*'optical'.*assets \[\]"):
        open_stac(
            bbox=(-105.5, 40.0, -105.45, 40.03),
            datetime=None,
            items=no_assets,
            modalities=("optical",),
            crs="EPSG:32613",
        )
    # with the tiles that do have assets but lie elsewhere: nothing overlaps
    with pytest.raises(NoItemsFoundError, match="overlaps"):
        open_stac(
            bbox=(-105.5, 40.0, -105.45, 40.03),
            datetime=None,
            items=items,
            modalities=("optical",),
            crs="EPSG:32613",
            max_cloud=None,
        )


def test_grd_has_no_vv_vh_here(fixtures):
    items = load(fixtures / "items" / "earthsearch__sentinel-1-grd.itemcollection.json")
    with pytest.raises(NoItemsFoundError, match="sentinel-1-rtc"):
        open_stac(
            bbox=(75, -46, 76, -45),
            datetime=None,
            items=items,
            modalities=("sar",),
            crs="EPSG:32743",
        )
    with pytest.raises(MissingBandError, match=r"'vv'.*'sar'.*'hh'"):
        open_stac(
            bbox=(75, -46, 76, -45),
            datetime=None,
            items=items,
            modalities=("sar",),
            crs="EPSG:32743",
            collections={"sar": "sentinel-1-grd"},
        )


@pytest.mark.parametrize(
    ("name", "bands"),
    [
        ("pc__sentinel-2-l2a", (*OPTICAL_BANDS, "SCL")),
        ("earthsearch__sentinel-2-l2a", (*OPTICAL_BANDS, "SCL")),
        ("earthsearch__sentinel-2-c1-l2a", (*OPTICAL_BANDS, "SCL")),
        ("pc__sentinel-1-rtc", SAR_BANDS),
        ("pc__cop-dem-glo-30", ("elevation",)),
        ("earthsearch__cop-dem-glo-30", ("elevation",)),
        ("pc__3dep-seamless", ("elevation",)),
    ],
)
def test_real_collections_name_every_band(fixtures, name, bands):
    """Each canonical band finds exactly one asset in the collection's item_assets."""
    keys = set(load(fixtures / "collections" / f"{name}.collection.json")["item_assets"])
    for band in bands:
        assert len(keys & set(ASSET_KEYS[band])) == 1, (band, sorted(keys))
