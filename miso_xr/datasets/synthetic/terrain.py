"""The terrain: a DEM with ridges and carved valleys, a river network, roads, derivatives."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...cube.grid import Grid
from .common import SCENE_CRS, _field, _transformer


def _meander(
    rng: np.random.Generator,
    start: tuple[float, float],
    heading: float,
    length_px: float,
    res: float,
    *,
    amplitude: float = 0.35,
    wavelengths_m: tuple[float, float] = (500.0, 3000.0),
) -> np.ndarray:
    """A wandering line from ``start`` (row, col): heading plus a few sinusoids of arc length.

    Returns ``(N, 2)`` float row/col points every half pixel.
    """
    n = max(2, int(length_px * 2))
    s = np.arange(n, dtype="float64") * 0.5 * res  # arc length, metres
    theta = np.full(n, heading, dtype="float64")
    for _ in range(3):
        lam = rng.uniform(*wavelengths_m)
        theta += (
            rng.uniform(0.3, 1.0)
            * amplitude
            * np.sin(2 * np.pi * s / lam + rng.uniform(0, 2 * np.pi))
        )
    # heading measured from +col (east), counter-clockwise; rows grow southward
    drow = -np.sin(theta) * 0.5
    dcol = np.cos(theta) * 0.5
    pts = np.empty((n, 2))
    pts[:, 0] = start[0] + np.concatenate([[0.0], np.cumsum(drow[:-1])])
    pts[:, 1] = start[1] + np.concatenate([[0.0], np.cumsum(dcol[:-1])])
    return pts


def _draw(mask: np.ndarray, pts: np.ndarray, width: float = 1.0) -> None:
    """Burn a polyline of half-pixel-spaced points into ``mask`` with about ``width`` pixels."""
    if len(pts) < 2:
        return
    h, w = mask.shape
    d = np.gradient(pts, axis=0)
    norm = np.hypot(d[:, 0], d[:, 1])
    norm[norm == 0] = 1.0
    nrm = np.stack([-d[:, 1] / norm, d[:, 0] / norm], axis=1)  # unit normal
    offsets = np.arange(-(width - 1) / 2, (width - 1) / 2 + 1e-9, 0.5) if width > 1 else [0.0]
    for off in offsets:
        p = pts + nrm * off
        r = np.floor(p[:, 0]).astype("int64")
        c = np.floor(p[:, 1]).astype("int64")
        ok = (r >= 0) & (r < h) & (c >= 0) & (c < w)
        mask[r[ok], c[ok]] = True


def _smooth_line(pts: np.ndarray, window: int) -> np.ndarray:
    """Moving average of a polyline (edge-padded) over ``window`` points."""
    if window < 3 or len(pts) < window:
        return pts
    pad = window // 2
    p = np.pad(pts, ((pad, pad), (0, 0)), mode="edge")
    kernel = np.ones(window) / window
    return np.stack([np.convolve(p[:, i], kernel, mode="valid")[: len(pts)] for i in (0, 1)], 1)


def _offset_line(pts: np.ndarray, offset_px: np.ndarray) -> np.ndarray:
    d = np.gradient(pts, axis=0)
    norm = np.hypot(d[:, 0], d[:, 1])
    norm[norm == 0] = 1.0
    nrm = np.stack([-d[:, 1] / norm, d[:, 0] / norm], axis=1)
    return pts + nrm * offset_px[:, None]


def _crossing(rng, size: int, heading: float, res: float, amplitude: float, wl) -> np.ndarray:
    """A line through a point near the centre that runs out of the grid at both ends."""
    p0 = (size / 2 + rng.uniform(-0.2, 0.2) * size, size / 2 + rng.uniform(-0.2, 0.2) * size)
    length = 1.6 * size
    fwd = _meander(rng, p0, heading, length, res, amplitude=amplitude, wavelengths_m=wl)
    bwd = _meander(rng, p0, heading + np.pi, length, res, amplitude=amplitude, wavelengths_m=wl)
    return np.concatenate([bwd[::-1], fwd[1:]])


@dataclass(eq=False)
class Terrain:
    """The ground: grid, DEM, channels and roads, their distances, and terrain derivatives.

    Every array is ``(H, W)``; distances in metres, angles as in :func:`make_scene`'s ``extra``.
    """

    grid: Grid
    dem: np.ndarray
    rivers: np.ndarray
    roads: np.ndarray
    d_river: np.ndarray  # distance to any channel
    d_main: np.ndarray  # distance to the main river (valley floors, young alluvium)
    d_road: np.ndarray
    slope_deg: np.ndarray
    aspect: np.ndarray  # radians, downslope, clockwise from north
    cos_s: np.ndarray  # cosine and sine of the slope
    sin_s: np.ndarray
    insol: np.ndarray  # insolation relative to flat ground, sun due south
    tpi: np.ndarray  # topographic position index, 500 m
    lat: np.ndarray  # latitude of each pixel, degrees


def make_terrain(
    r_terrain: np.random.Generator,
    r_network: np.random.Generator,
    *,
    size: int,
    res: float,
    center: tuple[float, float],
) -> Terrain:
    """Grid, DEM with carved valleys, river network and roads, terrain derivatives."""
    from scipy import ndimage

    lon0, lat0 = center
    shape = (size, size)

    # ---- grid: centre projected to Alaska Albers, corner snapped to the resolution
    cx, cy = _transformer("EPSG:4326", SCENE_CRS).transform(lon0, lat0)
    left = round((cx - size * res / 2) / res) * res
    top = round((cy + size * res / 2) / res) * res
    grid = Grid(SCENE_CRS, float(left), float(top), res, size, size)
    rows_m = (np.arange(size, dtype="float32") + 0.5) * np.float32(res)  # metres from the top

    # ---- terrain before valleys: regional swell, rolling hills, sharp ridge lines, roughness
    regional = 110 * _field(r_terrain, shape, res, 8000, 80000, 3.0, order=3)
    tilt_dir = r_terrain.uniform(0, 2 * np.pi)
    u = (
        np.cos(tilt_dir) * (rows_m[None, :] - size * res / 2)
        + np.sin(tilt_dir) * (rows_m[:, None] - size * res / 2)
    ).astype("float32")
    regional += 140 * np.tanh(u / 15000).astype("float32")
    del u
    hills = _field(r_terrain, shape, res, 600, 6000, 3.0, order=3)
    ridge_n = _field(r_terrain, shape, res, 1400, 6000, 2.5, order=3)
    ridge = (1 - np.minimum(np.abs(ridge_n), 2.0) / 2) ** 2  # sharp crests where noise crosses 0
    del ridge_n
    rough = _field(r_terrain, shape, res, 30, 300, 2.0)
    dem0 = 470 + regional + 110 * hills + 170 * (ridge - 0.45) + 3 * rough
    del hills, ridge

    # ---- river network: a main river crossing the scene, meandering tributaries off it
    rivers = np.zeros(shape, dtype=bool)
    main_heading = r_network.uniform(0, np.pi)
    main = _crossing(r_network, size, main_heading, res, 0.45, (600.0, 3000.0))
    main_mask = np.zeros(shape, dtype=bool)
    _draw(main_mask, main, width=max(1.0, 30.0 / res))
    rivers |= main_mask
    inside = np.flatnonzero(
        (main[:, 0] >= 0) & (main[:, 0] < size) & (main[:, 1] >= 0) & (main[:, 1] < size)
    )
    n_trib = max(2, int(round(size * res / 1400)))
    tribs = []
    if inside.size:
        for _ in range(n_trib):
            i = int(r_network.choice(inside))
            d = main[min(i + 1, len(main) - 1)] - main[max(i - 1, 0)]
            h_here = math.atan2(-d[0], d[1])
            side = 1 if r_network.random() < 0.5 else -1
            heading = h_here + side * (np.pi / 2 + r_network.uniform(-0.6, 0.6))
            length = r_network.uniform(1500, 4500) / res
            t = _meander(
                r_network,
                tuple(main[i]),
                heading,
                length,
                res,
                amplitude=0.5,
                wavelengths_m=(300.0, 1500.0),
            )
            tribs.append(t)
            if r_network.random() < 0.5 and len(t) > 10:  # a second-order branch
                j = int(r_network.integers(len(t) // 3, len(t)))
                bh = heading + r_network.choice([-1, 1]) * r_network.uniform(0.6, 1.2)
                tribs.append(
                    _meander(
                        r_network,
                        tuple(t[j]),
                        bh,
                        r_network.uniform(800, 2500) / res,
                        res,
                        amplitude=0.5,
                        wavelengths_m=(300.0, 1500.0),
                    )
                )
    for t in tribs:
        _draw(rivers, t, width=max(1.0, 10.0 / res))
    d_river = (ndimage.distance_transform_edt(~rivers) * res).astype("float32")
    d_main = (ndimage.distance_transform_edt(~main_mask) * res).astype("float32")
    del main_mask

    # ---- carve valleys: the ground eases down to a valley floor near every channel
    floor = 230 + 0.5 * regional
    v = 1 - np.exp(-((d_river / 380) ** 1.5))
    v *= 1 - 0.45 * np.exp(-((d_main / 1400) ** 2))
    dem = floor + (dem0 - floor) * v + 1.5 * rough
    del v, floor, dem0, rough, regional
    # soft clip into the interior-Alaska range 150-900 m (monotone, nearly linear mid-range)
    dem = (525 + 375 * np.tanh((dem - 525) / 375)).astype("float32")

    # ---- roads: one along the main valley (offset from the river), one crossing the scene
    roads = np.zeros(shape, dtype=bool)
    valley = _smooth_line(main, max(3, int(1200 / res)))
    side = 1 if r_network.random() < 0.5 else -1
    s = np.arange(len(valley)) * 0.5 * res
    off = side * (170 + 70 * np.sin(2 * np.pi * s / r_network.uniform(2500, 6000))) / res
    road_a = _offset_line(valley, off)
    _draw(roads, road_a, width=1.0)
    road_b = _crossing(
        r_network,
        size,
        main_heading + np.pi / 2 + r_network.uniform(-0.4, 0.4),
        res,
        0.15,
        (2000.0, 6000.0),
    )
    _draw(roads, road_b, width=1.0)
    roads &= ~rivers  # bridges: the channel wins
    d_road = (ndimage.distance_transform_edt(~roads) * res).astype("float32")

    # ---- terrain derivatives
    g_row, g_col = np.gradient(dem, res)
    g_north = -g_row
    slope = np.arctan(np.hypot(g_col, g_north)).astype("float32")  # radians
    aspect = np.arctan2(-g_col, -g_north).astype("float32")  # downslope, clockwise from north
    del g_row, g_col, g_north
    slope_deg = np.degrees(slope)
    # scalars as Python floats: numpy float64 scalars would promote the float32 arrays (NEP 50)
    cos_s, sin_s = np.cos(slope), np.sin(slope)
    zen = math.radians(48.0)
    # insolation relative to flat ground, sun due south: > 1 south-facing, < 1 north-facing
    insol = cos_s + math.tan(zen) * sin_s * np.cos(np.pi - aspect)
    tpi = dem - ndimage.uniform_filter(dem, size=max(3, int(round(500 / res)) | 1), mode="nearest")
    # latitude of each pixel: a plane fitted on a coarse lattice (exact to metres here)
    to_ll = _transformer(SCENE_CRS, "EPSG:4326")
    q = np.linspace(0, size - 1, 5)
    qq_r, qq_c = np.meshgrid(q, q, indexing="ij")
    _, lat_q = to_ll.transform(left + (qq_c.ravel() + 0.5) * res, top - (qq_r.ravel() + 0.5) * res)
    A = np.column_stack([np.ones(qq_r.size), qq_r.ravel(), qq_c.ravel()])
    coef = np.linalg.lstsq(A, np.asarray(lat_q), rcond=None)[0]
    lat = (
        np.float32(coef[0])
        + np.float32(coef[1]) * np.arange(size, dtype="float32")[:, None]
        + np.float32(coef[2]) * np.arange(size, dtype="float32")[None, :]
    )

    return Terrain(
        grid=grid,
        dem=dem,
        rivers=rivers,
        roads=roads,
        d_river=d_river,
        d_main=d_main,
        d_road=d_road,
        slope_deg=slope_deg,
        aspect=aspect,
        cos_s=cos_s,
        sin_s=sin_s,
        insol=insol,
        tpi=tpi,
        lat=lat,
    )
