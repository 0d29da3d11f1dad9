"""Read-time signing: hrefs are signed when each file is opened, on the worker, so tokens that
expire (Planetary Computer SAS tokens last about an hour) never outlive a long job's graph.

The archive and its token endpoint are a real loopback server (tests/token_server.py) whose
tokens expire after TTL seconds; the planetary-computer SDK gets its tokens from it through
``PC_SDK_SAS_URL``.
"""

from __future__ import annotations

import functools
import json
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import planetary_computer as pc  # the test extra: read-time signing is tested with the SDK
import pytest

from miso_xr.cube.stac import open_stac
from miso_xr.cube.stac.signing import planetary_computer_href, unsigned
from miso_xr.datasets.serving import Server, free_port
from miso_xr.datasets.synthetic import make_scene, write_scene, write_stac
from miso_xr.exceptions import InputError

TTL = 3.0  # seconds a token lives on the loopback archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("archive")
    scene = make_scene(seed=2, size=48)
    write_scene(scene, root)
    (root / ".ready").write_text("ok")
    port = free_port()
    server = Server(
        [
            sys.executable,
            str(Path(__file__).with_name("token_server.py")),
            str(root),
            str(port),
            str(TTL),
        ],
        f"http://127.0.0.1:{port}",
        "/.ready",
    )
    with server:
        paths = write_stac(root, server.url)
        items = [
            json.loads(line)
            for p in paths
            if p.name == "cop-dem-glo-30.items.ndjson"
            for line in p.read_text().splitlines()
        ]
        yield server.url, items, scene


@pytest.fixture
def sdk_on_loopback(archive, monkeypatch):
    """The planetary-computer SDK asks the loopback endpoint for its tokens."""
    url = archive[0]
    monkeypatch.setenv("PC_SDK_SAS_URL", f"{url}/api/sas/v1/token")
    pc.settings.Settings.get.cache_clear()
    pc.sas.TOKEN_CACHE.clear()
    yield url
    pc.settings.Settings.get.cache_clear()
    pc.sas.TOKEN_CACHE.clear()


def loopback_signer(href: str) -> str:
    """Sign a loopback href with a token from the SDK (module-level: it pickles to workers)."""
    token = pc.sas.get_token("miso", "archive")
    return token.sign(href.split("?", 1)[0]).href


def test_planetary_computer_hrefs_are_signed_from_the_token_endpoint(sdk_on_loopback):
    href = "https://miso.blob.core.windows.net/archive/x.tif?st=old&sig=expired"
    signed = planetary_computer_href(href)
    base, query = signed.split("?", 1)
    assert base == "https://miso.blob.core.windows.net/archive/x.tif"  # the old token is gone
    assert query.startswith("sig=") and abs(float(query[4:]) - time.time()) < 60
    assert unsigned(signed) == base
    # only Azure Blob Storage queries are tokens; other queries are kept
    assert unsigned("http://127.0.0.1:8000/a.tif?x=1") == "http://127.0.0.1:8000/a.tif?x=1"


def test_signed_once_fails_after_expiry_signed_at_read_time_does_not(archive, sdk_on_loopback):
    url, items, scene = archive
    kw = dict(grid=scene.grid, items=items, modalities=("covariates",), chunks=24)

    def sign_items_now(found):
        for d in found:
            for asset in d["assets"].values():
                asset["href"] = loopback_signer(asset["href"])
        return found

    once = open_stac(sign=sign_items_now, **kw)  # tokens in the graph, as before
    at_read = open_stac(patch_url=loopback_signer, **kw)  # tokens fetched when files open
    time.sleep(TTL + 1)  # a long job: every token from graph time has expired
    with pytest.raises(RuntimeError, match="403|Error opening"):
        once.compute(scheduler="threads")
    got = at_read.compute(scheduler="threads")
    np.testing.assert_array_equal(got["covariates"].sel(covariates_band="elevation"), scene.dem)


def test_read_time_reader_pickles_for_workers_and_options_are_checked(archive):
    from miso_xr.cube.stac.signing import signing_reader

    reader = signing_reader(loopback_signer)
    again = pickle.loads(pickle.dumps(reader))
    assert isinstance(again, functools.partial) and again.keywords["patch_url"] is loopback_signer
    url, items, scene = archive
    kw = dict(bbox=scene.bbox_lonlat, items=items, modalities=("covariates",))
    with pytest.raises(InputError, match="sign='later'"):
        open_stac(sign="later", **kw)
    with pytest.raises(InputError, match="patch_url='x'"):
        open_stac(patch_url="x", **kw)
