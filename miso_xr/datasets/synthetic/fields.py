"""The hidden fields: wetness, land cover, surface reflectance, permafrost and soil order.

See ``docs/synthetic.md`` for the rules behind them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...spec import SOIL_ORDERS
from .common import _field, _sigmoid
from .terrain import Terrain

# Land-cover endmember reflectances in OPTICAL_BANDS order (B04 B03 B02 B05 B06 B07 B08 B11 B12),
# typical interior-Alaska summer values: black spruce is dark with a low NIR plateau, birch/aspen
# bright in NIR, wet sedge/moss low in SWIR, gravel bright in SWIR, water dark everywhere.
_ENDMEMBERS = np.array(
    [
        [0.030, 0.040, 0.022, 0.058, 0.118, 0.135, 0.145, 0.105, 0.052],  # black spruce
        [0.030, 0.062, 0.030, 0.095, 0.260, 0.330, 0.360, 0.185, 0.082],  # birch / aspen
        [0.052, 0.068, 0.036, 0.088, 0.170, 0.200, 0.215, 0.120, 0.058],  # wet sedge / moss
        [0.085, 0.090, 0.050, 0.125, 0.200, 0.225, 0.240, 0.300, 0.185],  # steppe grass (bluffs)
        [0.060, 0.072, 0.042, 0.105, 0.190, 0.220, 0.235, 0.225, 0.125],  # alpine shrub tundra
        [0.030, 0.042, 0.045, 0.025, 0.018, 0.014, 0.013, 0.005, 0.003],  # water
        [0.160, 0.140, 0.110, 0.175, 0.195, 0.205, 0.215, 0.290, 0.230],  # gravel road
    ],
    dtype="float32",
).T  # (9 bands, 7 covers)


@dataclass(eq=False)
class HiddenFields:
    """What the images and the truth derive from: wetness, cover, surface reflectance, truth."""

    wetness: np.ndarray
    base: np.ndarray  # (9, H, W) surface reflectance of the cloud-free scene
    vegetation: np.ndarray  # NDVI of ``base``
    spruce: np.ndarray  # black spruce cover fraction
    grass: np.ndarray  # steppe grass cover fraction
    road_zone: np.ndarray
    permafrost: np.ndarray
    soil: np.ndarray


def make_fields(t: Terrain, r_fields: np.random.Generator) -> HiddenFields:
    """Hidden drivers (noise the DEM does not show), land cover, reflectance and the truth."""
    shape = t.dem.shape
    res = t.grid.resolution
    dem, rivers, roads, lat = t.dem, t.rivers, t.roads, t.lat
    d_river, d_main, d_road = t.d_river, t.d_main, t.d_road
    slope_deg, insol, tpi = t.slope_deg, t.insol, t.tpi

    # ---- hidden drivers (multi-scale noise the DEM does not show)
    n_wet = _field(r_fields, shape, res, 50, 1500, 2.2)
    n_org = _field(r_fields, shape, res, 80, 2000, 2.5)
    n_veg = _field(r_fields, shape, res, 20, 600, 2.0)
    n_pf_big = _field(r_fields, shape, res, 800, 5000, 3.0)
    n_pf_small = _field(r_fields, shape, res, 60, 400, 2.0)
    n_soil = _field(r_fields, shape, res, 300, 3000, 2.5)
    n_tephra = _field(r_fields, shape, res, 1500, 10000, 3.0)

    wetness = _sigmoid(2.2 * np.exp(-d_river / 150) - tpi / 22 - slope_deg / 7 + 0.8 * n_wet + 0.9)
    # organic mat (moss/peat): thick in wet, shaded ground; it is what keeps permafrost, and what
    # black spruce grows on, but no DEM shows it directly
    organic = 1.4 * wetness + 1.6 * (1 - insol) + 0.7 * n_org
    treeline = 760 + 35 * n_pf_big
    tundra = _sigmoid((dem - treeline) / 25)
    w_spruce = _sigmoid(2.5 * (organic - 0.55)) * (1 - tundra)
    w_decid = _sigmoid(6 * (insol - 1.02) - 2.0 * wetness + 0.6 * n_veg + 0.8) * (1 - tundra)
    w_sedge = _sigmoid(9 * (wetness - 0.78)) * (1 - tundra)
    w_grass = _sigmoid(10 * (insol - 1.32) + 0.5 * n_veg) * (1 - tundra)
    w_tundra = 2.0 * tundra
    total = w_spruce + w_decid + w_sedge + w_grass + w_tundra + 1e-6
    frac = np.stack([w_spruce, w_decid, w_sedge, w_grass, w_tundra]) / total
    del w_decid, w_sedge, w_tundra, total, w_spruce, w_grass, treeline, tundra
    spruce = frac[0].copy()
    grass = frac[3].copy()
    h, w = shape
    covers = np.zeros((7, h, w), dtype="float32")
    covers[:5] = frac
    del frac
    road_zone = roads & ~rivers
    covers[:, rivers] = 0
    covers[5, rivers] = 1
    covers[:, road_zone] = 0
    covers[6, road_zone] = 0.8
    covers[3, road_zone] = 0.2
    # surface reflectance of the cloud-free scene: linear mixture of the cover endmembers
    base = np.tensordot(_ENDMEMBERS, covers, axes=1).astype("float32")  # (9, H, W)
    del covers
    base[7:] *= 1 - 0.3 * wetness  # water in soil and leaves lowers SWIR reflectance
    base *= 1 + 0.04 * n_veg  # within-stand variation
    np.clip(base, 0.001, None, out=base)
    vegetation = ((base[6] - base[0]) / (base[6] + base[0])).astype("float32")

    # ---- hidden truth: permafrost
    logit = (
        -3.2 * (insol - 1)  # north-facing (shaded) slopes keep it, south-facing lose it
        + 2.6 * (spruce - 0.3)  # black spruce on a thick moss mat
        + 1.8 * wetness * spruce  # wet AND shaded by spruce: strongest
        + 1.0 * _sigmoid((330 - dem) / 35)  # cold-air pooling in low valley bottoms
        + 1.3 * _sigmoid((dem - 720) / 40)  # alpine cold
        - 4.5 * np.exp(-d_river / 40)  # taliks under and beside running water
        - 1.5 * np.exp(-d_road / 35)  # thaw along roads (disturbed moss)
        - 0.8 * grass  # dry steppe bluffs
        + 6.0 * (lat - 65.15)  # colder northward (+0.6 per 0.1 degree)
        + 0.9 * n_pf_big
        + 0.55 * n_pf_small
        + 0.35 * n_org
        - 0.55
    )
    permafrost = (logit > 0).astype("uint8")
    del logit, n_pf_big, n_pf_small, n_org, n_wet

    # ---- hidden truth: soil order (Soil Taxonomy keys Gelisols first)
    soil = np.full(shape, SOIL_ORDERS.index("Inceptisols"), dtype="int8")
    steep = slope_deg + 4 * n_soil
    spod = (dem > 520 + 60 * n_soil) & (insol < 1.1) & (wetness < 0.55) & (steep < 24)
    soil[spod] = SOIL_ORDERS.index("Spodosols")
    moll = (grass > 0.25) | ((insol > 1.22 + 0.05 * n_soil) & (wetness < 0.35) & (dem < 650))
    soil[moll] = SOIL_ORDERS.index("Mollisols")
    andi = (n_tephra > 1.0) & (steep < 20) & (wetness < 0.6)
    soil[andi] = SOIL_ORDERS.index("Andisols")
    soil[(steep > 27) | (dem > 860)] = SOIL_ORDERS.index("Entisols")  # thin colluvium, rock
    hist = (wetness > 0.8 + 0.05 * n_soil) & (organic > 2.0)
    soil[hist] = SOIL_ORDERS.index("Histosols")
    soil[(d_main < 90 + 40 * n_soil) | rivers] = SOIL_ORDERS.index("Entisols")  # young alluvium
    soil[permafrost == 1] = SOIL_ORDERS.index("Gelisols")
    # free the working fields before the image stack grows (matters at 4096 px)
    del steep, spod, moll, andi, hist, organic, n_soil, n_tephra, n_veg

    return HiddenFields(
        wetness=wetness,
        base=base,
        vegetation=vegetation,
        spruce=spruce,
        grass=grass,
        road_zone=road_zone,
        permafrost=permafrost,
        soil=soil,
    )
