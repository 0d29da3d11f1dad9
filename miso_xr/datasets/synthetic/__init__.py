"""The synthetic Alaska-like scene: the project's embedded default (demo, tests, benchmarks).

:func:`make_scene` builds, deterministically from a seed, a square scene in EPSG:3338 (Alaska
Albers) around a lon/lat centre in the interior Alaska uplands: a DEM with ridges, slopes and a
carved river-valley network; rivers and roads; Sentinel-2 L2A-like reflectance and SCL for summer
dates of several years (with clouds and their shadows); one Sentinel-1 RTC-like VV/VH image; and
the hidden truth: near-surface ``permafrost`` and ``soil_order``, which depend non-linearly on
aspect, elevation, wetness, vegetation and latitude, with noise at several scales. Field
``observations`` are sampled the way real ones are: near roads and rivers.

:func:`write_scene` writes it as Cloud-Optimized GeoTIFFs laid out like the real archives (uint16
DN with the 2022 radiometric offset, 20 m bands at 20 m) plus truth rasters and observation files;
:func:`write_stac` writes STAC collections and items (Planetary-Computer-like ids) pointing at
those files through a base URL, for ``rustac serve`` and a range-capable file server.
See ``docs/synthetic.md`` for the rules behind the hidden fields.

>>> scene = make_scene(seed=0, size=128)
>>> scene.optical[0][1].shape, scene.permafrost.dtype
((9, 128, 128), dtype('uint8'))

The package follows the scene's stages, one module each: :mod:`.terrain` (grid, DEM, rivers,
roads, derivatives), :mod:`.fields` (the hidden fields and truth), :mod:`.imagery` (Sentinel-2 and
Sentinel-1), :mod:`.observations` (field sites), :mod:`.scene` (:class:`Scene`, :func:`make_scene`
running the stages), and the writers :mod:`.files` (COGs, truth, observations) and :mod:`.stac`.
"""

from __future__ import annotations

from ...cube.grid import OPTICAL_BANDS, SAR_BANDS
from ...spec import SOIL_ORDERS
from .common import SCENE_CRS, TRUTH_NAMES
from .files import SceneFiles, write_scene
from .files import _write_cog as _write_cog  # tests write a large COG with it
from .scene import Scene, make_scene
from .stac import write_stac

__all__ = [
    "OPTICAL_BANDS",
    "SAR_BANDS",
    "SCENE_CRS",
    "SOIL_ORDERS",
    "TRUTH_NAMES",
    "Scene",
    "SceneFiles",
    "make_scene",
    "write_scene",
    "write_stac",
]
