"""to_cog streams: a lazy map far larger than memory allows is written chunk by chunk."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent(
    """
    import json, resource, sys, threading, time
    sys.path.insert(0, {root!r})
    import dask, dask.array as da, numpy as np, psutil, rioxarray, xarray as xr
    from miso_xr.cube.grid import Grid
    from miso_xr.io import to_cog

    n, chunk = {n}, {chunk}
    grid = Grid("EPSG:3338", 0.0, 2.0e6, 10.0, n, n)

    def block(block_info=None):
        (y0, y1), (x0, x1) = block_info[None]["array-location"]
        yy, xx = np.mgrid[y0:y1, x0:x1]
        return ((yy // 97 + xx // 89) % 7).astype("int16")

    label = da.map_blocks(block, chunks=((chunk,) * (n // chunk),) * 2, dtype="int16",
                          meta=np.empty((0, 0), "int16"))
    maps = xr.Dataset({{"label": (("y", "x"), label, {{"nodata": -1}})}},
                      coords={{"y": grid.y, "x": grid.x}}).rio.write_crs("EPSG:3338")
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    done = threading.Event()
    def sample():
        while not done.wait(0.01):  # bounded: stops when the write is done
            peak[0] = max(peak[0], proc.memory_info().rss)
    threading.Thread(target=sample, daemon=True).start()
    with dask.config.set(scheduler="threads", num_workers=2):
        to_cog(maps, {path!r})
    done.set()
    print(json.dumps({{"rise": peak[0] - base, "map_bytes": label.nbytes}}))
    """
)


@pytest.mark.slow  # writes and translates a 512 MiB map: ~20-60 s on 2 shared cores
def test_a_map_much_larger_than_the_memory_cap_streams_to_a_cog(tmp_path):
    import rasterio
    from rasterio.windows import Window

    n, chunk = 16384, 1024  # 16384^2 int16 = 512 MiB, written 2 MiB chunk by 2 MiB chunk
    path = tmp_path / "big.tif"
    code = CHILD.format(root=str(ROOT), n=n, chunk=chunk, path=str(path))
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    info = json.loads(run.stdout.strip().splitlines()[-1])
    # the memory cap: half the map. The rise is a fixed ~100-200 MiB (GDAL's libraries and
    # block cache, a few chunks), the same at 128 and 512 MiB maps; gathering the map, as
    # to_cog did before, rose 853 MiB here
    cap = 256 * 2**20
    assert info["map_bytes"] >= 2 * cap
    assert info["rise"] < cap, f"peak RSS rose {info['rise'] / 2**20:.0f} MiB"
    with rasterio.open(path) as src:
        assert src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert (src.width, src.height) == (n, n) and src.overviews(1)
        win = src.read(1, window=Window(5000, 7000, 300, 200))
    yy, xx = np.mgrid[7000:7200, 5000:5300]
    assert np.array_equal(win, ((yy // 97 + xx // 89) % 7).astype("int16"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.tif"]  # no temporary left
