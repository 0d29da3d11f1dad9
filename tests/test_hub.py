"""The checkpoint hub against a real loopback HTTP server (a subprocess) and real files.

Every bad case checks for one clear error and a clean cache: no ``*.part`` file left, nothing bad
under a final name. Caches live under ``tmp_path``; the user's cache is never touched.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from miso_xr import hub
from miso_xr.checkpoint import write_checkpoint
from miso_xr.cli import hub_main
from miso_xr.datasets.serving import Server, free_port
from miso_xr.exceptions import (
    CheckpointError,
    HubError,
    InputError,
    IntegrityError,
    OfflineError,
    UnsafeCheckpointError,
)
from miso_xr.spec import ModelSpec, Normalisation

HERE = Path(__file__).resolve().parent
OPTICAL = ("B04", "B03", "B02", "B05", "B06", "B07", "B08", "B11", "B12")


# ------------------------------------------------------------------------------------------
# fixtures: a fault server over a shared root, a private cache, real checkpoint files


@pytest.fixture(scope="module")
def www(tmp_path_factory):
    """(root, url, log): the fault server (tests/hub_faults_server.py) serving ``root``."""
    root = tmp_path_factory.mktemp("www")
    log = root.parent / f"{root.name}-requests.log"
    log.write_text("")
    (root / ".ready").write_text("ok")
    port = free_port()
    args = [sys.executable, str(HERE / "hub_faults_server.py"), str(root), str(port), str(log)]
    with Server(args, f"http://127.0.0.1:{port}", ready_path="/.ready") as server:
        yield root, server.url, log


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private cache; hub settings from the environment cleared so results depend on the test."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("MISO_XR_CACHE", str(cache))
    monkeypatch.delenv("MISO_XR_OFFLINE", raising=False)
    monkeypatch.delenv("MISO_XR_HUBS", raising=False)
    previous = hub.configure()
    hub._settings.update({"hubs": (), "cache_dir": None, "offline": None})
    yield cache
    hub._settings.update(previous)


def _gets(log: Path, needle: str) -> int:
    return sum(1 for line in log.read_text().splitlines() if needle in line)


def _assert_clean(cache: Path, *, bad_sha: str | None = None) -> None:
    parts = [p for p in cache.rglob("*.part")] if cache.exists() else []
    assert parts == [], f"temporary files left: {parts}"
    blobs = cache / "blobs"
    for blob in blobs.glob("*.safetensors") if blobs.exists() else []:
        # every file under a final name is good: its name is its hash
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.stem
    if bad_sha:
        assert not (blobs / f"{bad_sha}.safetensors").exists()


def raw_file(path: Path, *, seed: int = 0, n: int = 2000) -> str:
    """A plain safetensors file (no miso_xr metadata); returns its sha256."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {"w": rng.standard_normal(n).astype("float32"), "b": np.arange(seed + 3, dtype="int64")},
        str(path),
    )
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tiny_spec(bands: tuple[str, ...] = OPTICAL) -> ModelSpec:
    return ModelSpec(
        kind="miso",
        task="permafrost",
        classes=("absent", "present"),
        modalities=(("optical", bands),),
        window=8,
        stride=4,
        resolution=10.0,
        crs="EPSG:3338",
        normalisation=(("optical", Normalisation((0.1,) * len(bands), (1.0,) * len(bands))),),
    )


def miso_file(path: Path, *, seed: int = 0) -> str:
    """A checkpoint in the miso_xr format (metadata readable without the model class)."""
    rng = np.random.default_rng(seed)
    tensors = {"head.weight": rng.standard_normal((2, 4)).astype("float32")}
    return write_checkpoint(path, tensors, spec=tiny_spec(), config={"name": "t"})


def real_miso_model(path: Path, bands: tuple[str, ...] = OPTICAL):
    """A real MisoModel saved to ``path``."""
    from miso_xr.model.miso import MisoModel

    model = MisoModel.create(tiny_spec(bands), "tiny", seed=0)
    model.save(path)
    return model


# ------------------------------------------------------------------------------------------
# happy paths


def test_default_index_ships_empty_and_valid():
    doc = json.loads(hub.DEFAULT_INDEX.read_text())
    assert doc["schema_version"] == hub.SCHEMA_VERSION
    assert hub.read_index(hub.DEFAULT_INDEX) == []


def test_url_with_sha256_downloads_once_then_serves_from_cache(www, cache):
    root, url, log = www
    sha = raw_file(root / "ok" / "a.safetensors")
    path = hub.fetch(f"{url}/ok/a.safetensors", sha256=sha)
    assert path == cache / "blobs" / f"{sha}.safetensors"
    assert path.read_bytes() == (root / "ok" / "a.safetensors").read_bytes()
    again = hub.fetch(f"{url}/ok/a.safetensors", sha256=sha)
    assert again == path and _gets(log, "/ok/a.safetensors") == 1
    # a plain URL without sha256 is recorded, so it is not downloaded twice either
    sha_b = raw_file(root / "ok" / "b.safetensors", seed=1)
    assert hub.fetch(f"{url}/ok/b.safetensors").name == f"{sha_b}.safetensors"
    hub.fetch(f"{url}/ok/b.safetensors")
    assert _gets(log, "/ok/b.safetensors") == 1
    # its cached copy rots and the server now has new bytes: unpinned, the URL is fetched anew
    blob = cache / "blobs" / f"{sha_b}.safetensors"
    data = blob.read_bytes()
    blob.write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    sha_new = raw_file(root / "ok" / "b.safetensors", seed=2)
    assert hub.fetch(f"{url}/ok/b.safetensors").name == f"{sha_new}.safetensors"
    assert not blob.exists() and _gets(log, "/ok/b.safetensors") == 2
    _assert_clean(cache)


def test_publish_to_directory_hub_then_fetch_by_name_over_http(www, cache):
    root, url, log = www
    ckpt = cache.parent / "perm.safetensors"
    sha = miso_file(ckpt)
    entry = hub.publish(
        ckpt, root / "hub1", name="perm-tiny", version="1", licence="MIT", description="tiny"
    )
    assert entry.sha256 == sha and entry.size == ckpt.stat().st_size
    assert entry.metadata["modalities"] == {"optical": list(OPTICAL)}
    doc = json.loads((root / "hub1" / "index.json").read_text())
    assert [e["name"] for e in doc["entries"]] == ["perm-tiny"]
    assert doc["entries"][0]["url"] == "files/perm-tiny-1.safetensors"  # relative: relocatable
    # a newer version; "name" resolves to the highest (natural order: 10 > 9)
    sha9 = miso_file(cache.parent / "p9.safetensors", seed=9)
    sha10 = miso_file(cache.parent / "p10.safetensors", seed=10)
    for v, p in (("9", "p9"), ("10", "p10")):
        hub.publish(
            cache.parent / f"{p}.safetensors",
            root / "hub1",
            name="perm-tiny",
            version=v,
            licence="MIT",
            description="",
        )
    assert hub.resolve("perm-tiny", hub=f"{url}/hub1").sha256 == sha10
    assert hub.fetch("perm-tiny@9", hub=f"{url}/hub1").name == f"{sha9}.safetensors"
    path = hub.fetch("perm-tiny@1", hub=f"{url}/hub1")
    assert path.read_bytes() == ckpt.read_bytes()
    report = hub.verify("perm-tiny@1", hub=f"{url}/hub1")
    assert report.ok, str(report)
    assert report.kind == "model" and report.expected_sha256 == sha
    # publishing the very same bytes again is a no-op; other bytes under that version are refused
    hub.publish(ckpt, root / "hub1", name="perm-tiny", version="1", licence="MIT", description="")
    with pytest.raises(HubError, match="never changes its bytes"):
        hub.publish(
            cache.parent / "p9.safetensors",
            root / "hub1",
            name="perm-tiny",
            version="1",
            licence="MIT",
            description="",
        )
    _assert_clean(cache)


def test_load_by_name_over_http_returns_the_model(www, cache):
    root, url, _ = www
    model = real_miso_model(cache.parent / "m.safetensors")
    hub.publish(
        cache.parent / "m.safetensors",
        root / "hub2",
        name="m",
        version="1",
        licence="MIT",
        description="",
    )
    loaded = hub.load("m@1", hub=f"{url}/hub2")
    assert type(loaded) is type(model)
    assert (
        loaded.sha256 == hashlib.sha256((cache.parent / "m.safetensors").read_bytes()).hexdigest()
    )
    assert loaded.spec == model.spec and loaded.source == "m@1"
    import miso_xr

    assert miso_xr.load is hub.load


def test_hubs_from_env_and_configure(www, cache, monkeypatch):
    root, url, _ = www
    sha = raw_file(cache.parent / "bb.safetensors", seed=3)
    hub.publish(
        cache.parent / "bb.safetensors",
        root / "hub3",
        name="bb",
        version="2",
        licence="CC-BY-4.0",
        description="",
        kind="backbone",
    )
    with pytest.raises(HubError, match="no hub entry named 'bb'"):
        hub.resolve("bb")
    monkeypatch.setenv("MISO_XR_HUBS", f"{root}/nowhere, {url}/hub3")
    assert hub.resolve("bb").sha256 == sha  # the unreadable first hub does not hide the second
    monkeypatch.delenv("MISO_XR_HUBS")
    hub.configure(hubs=[f"{url}/hub3"])
    assert [e.ref for e in hub.list_entries()] == ["bb@2"]
    with pytest.raises(HubError, match=r"versions \['2'\], not '3'"):
        hub.resolve("bb@3")
    # a backbone is not a model
    with pytest.raises(InputError, match="load_backbone"):
        hub.load("bb")


def test_publish_to_fsspec_memory_hub_and_fetch_by_name(cache):
    import fsspec

    src = cache.parent / "x.safetensors"
    sha = raw_file(src, seed=5)
    entry = hub.publish(
        src,
        "memory://teamhub",
        name="x",
        version="1.0",
        licence="MIT",
        description="",
        kind="backbone",
    )
    assert entry.index == "memory://teamhub/index.json"
    assert fsspec.filesystem("memory").exists("/teamhub/files/x-1.0.safetensors")
    path = hub.fetch("x@1.0", hub="memory://teamhub")
    assert path.name == f"{sha}.safetensors"
    fsspec.filesystem("memory").rm("/teamhub", recursive=True)


def test_local_path_and_file_url(cache, tmp_path):
    src = tmp_path / "here.safetensors"
    sha = raw_file(src)
    assert hub.fetch(src) == src
    assert hub.fetch(f"file://{src}", sha256=sha) == src
    with pytest.raises(IntegrityError, match=f"expected {'0' * 64}, got {sha}"):
        hub.fetch(src, sha256="0" * 64)
    with pytest.raises(InputError, match="64 hexadecimal"):
        hub.fetch(src, sha256="abc")
    with pytest.raises(InputError, match="timeout=0 must be a positive"):
        hub.fetch(src, timeout=0)
    with pytest.raises(InputError, match="must be a hub entry name, a path or a URL"):
        hub.fetch("  ")
    with pytest.raises(CheckpointError, match="does not exist"):
        hub.fetch(tmp_path / "missing.safetensors")
    assert not cache.exists()  # local files are used in place, never copied


# ------------------------------------------------------------------------------------------
# bad bytes, bad servers


def test_hash_mismatch_leaves_cache_clean(www, cache):
    root, url, _ = www
    sha = raw_file(root / "mm" / "a.safetensors")
    wrong = hashlib.sha256(b"other").hexdigest()
    with pytest.raises(IntegrityError) as err:
        hub.fetch(f"{url}/mm/a.safetensors", sha256=wrong)
    assert (
        wrong in str(err.value) and sha in str(err.value) and "/mm/a.safetensors" in str(err.value)
    )
    _assert_clean(cache, bad_sha=wrong)


def test_truncated_file_on_the_hub_and_cut_connection(www, cache):
    root, url, _ = www
    src = cache.parent / "t.safetensors"
    miso_file(src, seed=2)
    entry = hub.publish(src, root / "hubt", name="t", version="1", licence="MIT", description="")
    served = root / "hubt" / entry.url
    served.write_bytes(served.read_bytes()[:-100])  # the hub's copy lost its tail
    with pytest.raises(IntegrityError, match=f"truncated: expected {entry.size} bytes"):
        hub.load("t", hub=f"{url}/hubt")
    _assert_clean(cache, bad_sha=entry.sha256)
    # the server announces the full length and hangs up half-way
    sha = raw_file(root / "cut" / "c.safetensors", n=50_000)
    with pytest.raises(HubError, match="cut off after"):
        hub.fetch(f"{url}/truncate/cut/c.safetensors", sha256=sha)
    # without any expected hash the header still exposes a short file
    (root / "cut" / "short.safetensors").write_bytes(
        (root / "cut" / "c.safetensors").read_bytes()[:-8]
    )
    with pytest.raises(IntegrityError, match="truncated or padded"):
        hub.fetch(f"{url}/cut/short.safetensors")
    _assert_clean(cache, bad_sha=sha)
    assert not (cache / "urls").exists() or not list((cache / "urls").iterdir())


def test_html_page_served_with_200(www, cache):
    root, url, _ = www
    sha = raw_file(root / "html" / "m.safetensors")  # the real file exists; the server lies
    with pytest.raises(IntegrityError) as err:
        hub.fetch(f"{url}/html/m.safetensors", sha256=sha)
    assert "text/html" in str(err.value) and "<!DOCTYPE html>" in str(err.value)
    with pytest.raises(IntegrityError, match=r"not a valid \.safetensors.*text/html"):
        hub.fetch(f"{url}/html/m.safetensors")  # no hash to compare: the header check catches it
    _assert_clean(cache, bad_sha=sha)
    # an index replaced by an HTML page
    with pytest.raises(HubError, match="is not JSON"):
        hub.read_index(f"{url}/html/hub")


def test_http_errors_name_url_and_status(www, cache):
    _, url, _ = www
    with pytest.raises(HubError, match=rf"{url}/nope/x.safetensors answered HTTP 404"):
        hub.fetch(f"{url}/nope/x.safetensors")
    with pytest.raises(HubError, match="answered HTTP 500"):
        hub.fetch(f"{url}/status/500/x.safetensors", sha256="a" * 64)
    with pytest.raises(HubError, match="no hub entry named 'ghost'.*answered HTTP 403"):
        hub.load("ghost", hub=f"{url}/status/403/hub")
    _assert_clean(cache)


def test_stalled_server_times_out(www, cache):
    _, url, _ = www
    started = time.monotonic()
    with pytest.raises(HubError, match="could not be reached in 1 s|stopped"):
        hub.fetch(f"{url}/stall/x.safetensors", sha256="b" * 64, timeout=1)
    assert time.monotonic() - started < 8
    _assert_clean(cache)


def test_unreachable_host_is_one_hub_error(cache):
    port = free_port()  # nothing listens there
    with pytest.raises(HubError, match=f"127.0.0.1:{port}/x.safetensors could not be reached"):
        hub.fetch(f"http://127.0.0.1:{port}/x.safetensors", timeout=1)


# ------------------------------------------------------------------------------------------
# processes: two fetchers at once, a fetcher killed mid-download

_CHILD = """
import sys, time
from pathlib import Path
from miso_xr import hub
me, other = Path(sys.argv[4] + "-" + sys.argv[5]), Path(sys.argv[4] + "-" + str(1 - int(sys.argv[5])))
me.touch()
deadline = time.monotonic() + 30
while not other.exists() and time.monotonic() < deadline:  # start both fetches together
    time.sleep(0.01)
print(hub.fetch(sys.argv[1], hub=sys.argv[2], cache_dir=sys.argv[3], timeout=10))
"""


def test_two_processes_fetching_at_once_end_with_one_good_file(www, cache, tmp_path):
    root, url, log = www
    src = tmp_path / "big.safetensors"
    sha = raw_file(src, n=60_000)  # ~240 KB: 1.5 s through /slow/, so the two fetches overlap
    entry = hub.publish(
        src, root / "hubc", name="big", version="1", licence="MIT", description="", kind="backbone"
    )
    # point the entry at the slow path of the same file
    index = root / "hubc" / "index.json"
    doc = json.loads(index.read_text())
    doc["entries"][0]["url"] = f"{url}/slow/hubc/{entry.url}"
    index.write_text(json.dumps(doc))
    args = [sys.executable, "-c", _CHILD, "big@1", f"{url}/hubc", str(cache), str(tmp_path / "go")]
    procs = [
        subprocess.Popen([*args, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for i in (0, 1)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1].decode()[-800:] for o in outs]
    paths = {o[0].decode().strip() for o in outs}
    assert paths == {str(cache / "blobs" / f"{sha}.safetensors")}
    assert _gets(log, f"/slow/hubc/{entry.url}") == 1  # the second waited, then used the first's
    _assert_clean(cache)


def test_killed_download_never_leaves_a_good_looking_file(www, cache, tmp_path):
    root, url, _ = www
    sha = raw_file(root / "kill" / "k.safetensors", n=100_000)  # 400 KB: 2.5 s through /slow/
    code = "import sys; from miso_xr import hub; hub.fetch(sys.argv[1], sha256=sys.argv[2])"
    child = subprocess.Popen(
        [sys.executable, "-c", code, f"{url}/slow/kill/k.safetensors", sha],
        env={**os.environ, "MISO_XR_CACHE": str(cache)},
    )
    deadline = time.monotonic() + 30
    while not list((cache / "blobs").glob("*.part")) if (cache / "blobs").exists() else True:
        assert time.monotonic() < deadline and child.poll() is None, "download never started"
        time.sleep(0.02)
    time.sleep(0.2)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)
    final = cache / "blobs" / f"{sha}.safetensors"
    assert not final.exists()  # only the temporary file: nothing under the final name
    with pytest.raises(OfflineError):
        hub.fetch(f"{url}/kill/k.safetensors", sha256=sha, offline=True)
    assert hub.fetch(f"{url}/kill/k.safetensors", sha256=sha) == final  # stale part cleaned
    _assert_clean(cache)


# ------------------------------------------------------------------------------------------
# offline


def test_offline_without_and_with_the_cache(www, cache, monkeypatch):
    root, url, log = www
    src = cache.parent / "o.safetensors"
    sha = miso_file(src, seed=4)
    hub.publish(src, root / "hubo", name="o", version="1", licence="MIT", description="")
    # never fetched: the index itself is missing from the cache
    with pytest.raises(OfflineError, match="was never fetched into the cache"):
        hub.fetch("o@1", hub=f"{url}/hubo", offline=True)
    hub.list_entries(hub=f"{url}/hubo")  # the index is cached, the file is not
    with pytest.raises(OfflineError) as err:
        hub.fetch("o@1", hub=f"{url}/hubo", offline=True)
    msg = str(err.value)
    assert "'o@1'" in msg and sha in msg and str(cache / "blobs" / f"{sha}.safetensors") in msg
    hub.fetch("o@1", hub=f"{url}/hubo")
    before = log.read_text()
    monkeypatch.setenv("MISO_XR_OFFLINE", "1")
    assert hub.fetch("o@1", hub=f"{url}/hubo") == cache / "blobs" / f"{sha}.safetensors"
    assert hub.verify("o@1", hub=f"{url}/hubo").ok
    assert log.read_text() == before  # offline touched no server
    # a cached copy that rotted is removed, not used
    blob = cache / "blobs" / f"{sha}.safetensors"
    data = bytearray(blob.read_bytes())
    data[-1] ^= 0xFF
    blob.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="did not match sha256"):
        hub.fetch("o@1", hub=f"{url}/hubo")
    _assert_clean(cache, bad_sha=sha)
    monkeypatch.delenv("MISO_XR_OFFLINE")
    assert hub.fetch("o@1", hub=f"{url}/hubo") == blob  # online again: fetched anew


# ------------------------------------------------------------------------------------------
# no code ever runs from a checkpoint


class _Evil:
    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        # unpickling this calls open(marker, "w"): proof that code ran
        return (open, (self.marker, "w"))


def test_pickle_that_runs_code_is_never_loaded(www, cache, tmp_path):
    import torch

    root, url, _ = www
    marker = tmp_path / "PWNED"
    payload = pickle.dumps(_Evil(marker))
    for name in ("evil.pkl", "evil.pt", "evil.ckpt"):
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(UnsafeCheckpointError, match="convert"):
            hub.load(tmp_path / name)
    (tmp_path / "evil.safetensors").write_bytes(payload)  # a pickle under a safe name
    with pytest.raises(UnsafeCheckpointError, match="pickle"):
        hub.load(tmp_path / "evil.safetensors")
    torch.save({"w": _Evil(marker)}, tmp_path / "zip.pt")  # torch.save's zip container
    (root / "evil").mkdir()
    (root / "evil" / "x.safetensors").write_bytes((tmp_path / "zip.pt").read_bytes())
    (root / "evil" / "y.safetensors").write_bytes(payload)
    with pytest.raises(UnsafeCheckpointError, match="torch.save zip"):
        hub.load(f"{url}/evil/x.safetensors")
    with pytest.raises(UnsafeCheckpointError, match="pickle"):
        hub.load(f"{url}/evil/y.safetensors")
    with pytest.raises(UnsafeCheckpointError, match=r"\.pth"):
        hub.load(f"{url}/evil/z.pth")  # refused by name, before any download
    for name in ("evil.pkl", "zip.pt"):
        with pytest.raises(UnsafeCheckpointError, match="weights_only=True"):
            hub.convert(tmp_path / name, tmp_path / "out.safetensors")
    assert not marker.exists(), "unpickling ran code"
    assert not (tmp_path / "out.safetensors").exists()
    _assert_clean(cache)


def test_convert_weights_only_pickle(tmp_path):
    import torch
    from safetensors.torch import load_file

    w = torch.arange(12, dtype=torch.float32).reshape(3, 4)
    b = torch.ones(3, dtype=torch.float64)
    torch.save(
        {"state_dict": {"layer.w": w, "layer.b": b, "tied": w}, "epoch": 7}, tmp_path / "w.ckpt"
    )
    report = hub.convert(tmp_path / "w.ckpt", tmp_path / "w.safetensors")
    assert (report.tensors, report.parameters, report.prefix) == (3, 27, "state_dict")
    assert report.skipped == ("epoch",) and "no code was run" in str(report)
    out = load_file(str(tmp_path / "w.safetensors"))
    assert (
        torch.equal(out["layer.w"], w)
        and torch.equal(out["tied"], w)
        and out["layer.b"].dtype == b.dtype
    )
    assert report.sha256 == hashlib.sha256((tmp_path / "w.safetensors").read_bytes()).hexdigest()
    with pytest.raises(InputError, match=r"must end in \.safetensors"):
        hub.convert(tmp_path / "w.ckpt", tmp_path / "w.pt")
    torch.save({"epoch": 7}, tmp_path / "none.pt")
    with pytest.raises(InputError, match="holds no tensors"):
        hub.convert(tmp_path / "none.pt", tmp_path / "none.safetensors")


# ------------------------------------------------------------------------------------------
# verify, publish errors, transports not installed


def test_verify_reports_problems_without_raising(cache, tmp_path):
    good = tmp_path / "g.safetensors"
    sha = miso_file(good)
    report = hub.verify(good)
    assert report.ok and report.sha256 == sha and report.kind == "model"
    assert report.metadata["classes"] == ["absent", "present"]
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(good.read_bytes()[:-10])
    report = hub.verify(bad)
    assert not report.ok and "truncated" in report.problems[0]
    assert "BAD" in str(report)


def test_publish_refuses_bad_input_and_leaves_hub_untouched(tmp_path):
    src = tmp_path / "p.safetensors"
    miso_file(src)
    hub_dir = tmp_path / "hub"
    ok = {"name": "p", "version": "1", "licence": "MIT", "description": ""}
    cases = [
        ({"name": "a/b"}, InputError, "name='a/b'"),
        ({"version": "1@2"}, InputError, "version='1@2'"),
        ({"kind": "weights"}, InputError, "kind='weights'"),
        ({"licence": ""}, InputError, "licence= is required"),
    ]
    for change, cls, msg in cases:
        with pytest.raises(cls, match=msg):
            hub.publish(src, hub_dir, **{**ok, **change})
    raw = tmp_path / "raw.safetensors"
    raw_file(raw)
    with pytest.raises(CheckpointError, match="not a miso_xr checkpoint"):
        hub.publish(raw, hub_dir, **ok)  # a model entry needs the checkpoint's metadata
    (tmp_path / "p.pt").write_bytes(b"\x80\x04N.")
    with pytest.raises(UnsafeCheckpointError):
        hub.publish(tmp_path / "p.pt", hub_dir, **ok)
    assert not hub_dir.exists() or not list(hub_dir.rglob("*.json"))


def test_missing_transports_name_what_to_install(cache, monkeypatch):
    # as if the optional extras were not installed, whatever this environment has
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)
    monkeypatch.setitem(sys.modules, "s3fs", None)
    with pytest.raises(HubError, match=r"pip install 'miso_xr\[hf\]'"):
        hub.load("hf://org/repo/model.safetensors")
    with pytest.raises(HubError, match="s3fs"):
        hub.load("s3://bucket/model.safetensors", sha256="c" * 64)
    with pytest.raises(HubError, match="no installed filesystem handles notaproto://"):
        hub.load("notaproto://x/model.safetensors")


# ------------------------------------------------------------------------------------------
# the visual encoder's backbone


def test_load_backbone_satlas_layout(www, cache, tmp_path):
    import torch
    from safetensors.torch import save_file as save_torch

    from miso_xr.model.swin import SwinV2Encoder

    root, url, _ = www
    tiny = {"embed_dim": 8, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 2, 2), "window_size": 2}
    source = SwinV2Encoder(3, **tiny)  # RGB, like a Satlas Sentinel-2 TCI backbone
    sd = {f"backbone.backbone.{k}": v.clone() for k, v in source.state_dict().items()}
    sd["backbone.fpn.layer.weight"] = torch.zeros(2, 2)  # Satlas FPN keys are ignored
    save_torch(sd, str(tmp_path / "satlas.safetensors"))
    hub.publish(
        tmp_path / "satlas.safetensors",
        root / "hubb",
        name="satlas-tiny",
        version="1",
        licence="ODC-BY",
        description="",
        kind="backbone",
    )
    target = SwinV2Encoder(9, **tiny)
    enc = hub.load_backbone("satlas-tiny", in_channels=9, encoder=target, hub=f"{url}/hubb")
    assert enc is target and enc.load_report.prefix == "backbone.backbone."
    assert enc.load_report.reinitialised == ["backbone.backbone.features.0.0.weight"]
    key = "features.1.0.attn.qkv.weight"
    assert torch.equal(enc.state_dict()[key], source.state_dict()[key])
    with pytest.raises(InputError, match="reads 9 bands"):
        hub.load_backbone("satlas-tiny", in_channels=4, encoder=target, hub=f"{url}/hubb")
    with pytest.raises(InputError, match="positive int"):
        hub.load_backbone("satlas-tiny", in_channels=0, hub=f"{url}/hubb")


# ------------------------------------------------------------------------------------------
# a checkpoint that does not fit the cube


def test_band_mismatch_is_named_at_predict(www, cache, monkeypatch):
    from miso_xr.cube.grid import Grid, make_cube
    from miso_xr.exceptions import MissingBandError

    root, url, _ = www
    real_miso_model(cache.parent / "bands.safetensors")
    hub.publish(
        cache.parent / "bands.safetensors",
        root / "hubp",
        name="bands",
        version="1",
        licence="MIT",
        description="",
    )
    monkeypatch.setenv("MISO_XR_HUBS", f"{url}/hubp")  # predict resolves the name itself
    grid = Grid(crs="EPSG:3338", left=0.0, top=320.0, resolution=10.0, width=32, height=32)
    few = OPTICAL[:7]  # no B11, B12
    cube = make_cube({"optical": (np.zeros((7, 32, 32), "float32"), few)}, grid, chunks=16)
    with pytest.raises(MissingBandError, match="B11") as err:
        cube.miso.predict("bands@1")
    assert "B12" in str(err.value) and "optical" in str(err.value)


# ------------------------------------------------------------------------------------------
# CLI


def test_cli_publish_list_fetch_verify_convert(www, cache, tmp_path, capsys):
    import torch

    root, url, _ = www
    ckpt = tmp_path / "c.safetensors"
    sha = miso_file(ckpt, seed=8)
    hub_dir = root / "hubcli"
    rc = hub_main(
        [
            "publish",
            str(ckpt),
            str(hub_dir),
            "--name",
            "cli-model",
            "--version",
            "0.1",
            "--licence",
            "MIT",
            "--description",
            "from the CLI",
        ]
    )
    assert rc == 0 and "published cli-model@0.1" in capsys.readouterr().out
    assert hub_main(["list", "--hub", f"{url}/hubcli"]) == 0
    out = capsys.readouterr().out
    assert "cli-model@0.1" in out and "from the CLI" in out
    assert hub_main(["list", "--hub", f"{url}/hubcli", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["sha256"] == sha
    assert hub_main(["fetch", "cli-model", "--hub", f"{url}/hubcli"]) == 0
    assert f"{sha}.safetensors" in capsys.readouterr().out
    assert hub_main(["verify", "--cache-dir", str(cache)]) == 0  # every cached file
    assert "1 ok, 0 bad" in capsys.readouterr().out
    blob = cache / "blobs" / f"{sha}.safetensors"
    blob.write_bytes(blob.read_bytes()[:-4])
    assert hub_main(["verify", "cli-model@0.1", "--hub", f"{url}/hubcli", "--offline"]) == 1
    assert "differs from the index" in capsys.readouterr().out
    assert hub_main(["fetch", "nothing-here", "--hub", f"{url}/hubcli"]) == 1
    assert "no hub entry named 'nothing-here'" in capsys.readouterr().err
    torch.save({"w": torch.zeros(2)}, tmp_path / "w.pth")
    assert hub_main(["convert", str(tmp_path / "w.pth"), str(tmp_path / "w.safetensors")]) == 0
    assert "weights_only=True" in capsys.readouterr().out
