"""predict(): seamless across chunkings and halos, lazy, NaN-faithful, and checks the cube.

``ToyModel`` here is a small real torch conv net following the predictor protocol (its receptive
field, 3 px, is smaller than the window, so window edges see zero padding and blending matters);
other test modules import it from here.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import miso_xr  # noqa: F401 - registers .miso
from miso_xr.checkpoint import write_checkpoint
from miso_xr.cube.grid import Grid, make_cube
from miso_xr.exceptions import IncompatibleCubeError, InputError, MissingBandError
from miso_xr.infer.predict import check_cube, predict
from miso_xr.infer.windows import WindowPlan, window_weights
from miso_xr.spec import ModelSpec, Normalisation

# these tests cut chunks thinner than the halo on purpose; test_chunks.py tests the warning
THIN_CHUNKS = pytest.mark.filterwarnings("ignore::miso_xr.exceptions.RechunkWarning")

BANDS = (("optical", ("B04", "B03", "B02")), ("covariates", ("elevation",)))


class ToyModel:
    """A 2-layer conv net (3x3 then 1x1, dropout between) that follows the predictor protocol."""

    def __init__(self, spec: ModelSpec, hidden: int = 8, seed: int = 0, state=None, p=0.3):
        import torch

        n_in = sum(len(b) for _, b in spec.modalities)
        k = len(spec.classes)
        torch.manual_seed(seed)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(n_in, hidden, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Dropout(p),
            torch.nn.Conv2d(hidden, k, 1),
        ).eval()
        if state is not None:
            self.net.load_state_dict({n: torch.from_numpy(v) for n, v in state.items()})
        self.spec, self.hidden, self.p = spec, hidden, p
        self.sha256: str | None = None
        self.source: str | None = None
        self.device = "cpu"
        self.windows_seen = 0  # windows this object predicted (tests read it)

    def save(self, path) -> str:
        tensors = {n: t.detach().cpu().numpy() for n, t in self.net.state_dict().items()}
        sha = write_checkpoint(
            path, tensors, spec=self.spec, config={"hidden": self.hidden, "p": self.p}
        )
        self.sha256, self.source = sha, str(path)
        return sha

    @classmethod
    def from_checkpoint(cls, tensors, info):
        return cls(info.spec, hidden=info.config["hidden"], state=tensors, p=info.config["p"])

    def to(self, device):
        self.net.to(device)
        self.device = device
        return self

    def predict_windows(self, inputs, x, y, *, device="cpu"):
        import torch

        arr = np.concatenate([inputs[m] for m, _ in self.spec.modalities], axis=1)
        self.windows_seen += len(arr)
        arr = np.nan_to_num(arr / 100.0, nan=0.0)  # the model fills NaN itself (protocol)
        with torch.no_grad():
            t = torch.from_numpy(arr.astype(np.float32)).to(device)
            with torch.autocast("cuda", enabled=str(device).startswith("cuda")):
                logits = self.net(t).float()
            # a location term: proves each window gets its own pixel-centre coordinates
            loc = torch.from_numpy(np.sin(x / 70.0) - np.cos(y / 90.0)).float().to(device)
            logits[:, 0] += loc[:, None, :]
            return torch.softmax(logits, dim=1).cpu().numpy()


def toy_spec(window=16, stride=8, classes=("absent", "present", "unknown"), kind="toy_conv"):
    return ModelSpec(
        kind=kind,
        task="permafrost",
        classes=tuple(classes),
        modalities=BANDS,
        window=window,
        stride=stride,
        resolution=10.0,
        crs="EPSG:3338",
    )


def _with_identity_normalisation(spec):
    """A MISO spec needs normalisation statistics for every modality (one per input feature)."""
    identity = tuple(
        (m, Normalisation((0.0,) * len(b), (1.0,) * len(b))) for m, b in spec.modalities
    )
    return ModelSpec(**{**spec.__dict__, "normalisation": identity})


def toy_cube(height=300, width=220, chunks=128, seed=1, nan_patch=True, crs="EPSG:3338"):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = 50 * np.sin(xx / 17.0) + 40 * np.cos(yy / 23.0)
    opt = np.stack([base + rng.normal(0, 10, base.shape) for _ in range(3)]).astype("float32")
    elev = (200 + base + rng.normal(0, 5, base.shape))[None].astype("float32")
    if nan_patch:
        opt[1, 40:60, 30:45] = np.nan  # a cloud in one band
        elev[0, height - 5 :, :] = np.nan  # a nodata strip on the south edge
    grid = Grid(crs, left=500_000.0, top=1_200_000.0, resolution=10.0, width=width, height=height)
    return make_cube(
        {"optical": (opt, BANDS[0][1]), "covariates": (elev, BANDS[1][1])}, grid, chunks=chunks
    )


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    model = ToyModel(toy_spec())
    model.save(tmp_path_factory.mktemp("ckpt") / "toy.safetensors")
    return model


def reference_map(cube, model, window, stride):
    """Straight numpy, no Dask: pad the whole grid with NaN, run every lattice window, blend."""
    arr = np.concatenate([cube[m].sel({f"{m}_band": list(b)}).values for m, b in BANDS])
    _, h, w = arr.shape
    pad = window
    padded = np.pad(arr, ((0, 0), (pad, pad), (pad, pad)), constant_values=np.nan)
    k = len(model.spec.classes)
    acc = np.zeros((k, h + 2 * pad, w + 2 * pad))
    wsum = np.zeros((h + 2 * pad, w + 2 * pad))
    wt = window_weights(window)  # predict's default: Hann
    g = Grid.from_dataset(cube)
    r = -((window - 1) // stride) * stride
    while r < h:
        c = -((window - 1) // stride) * stride
        while c < w:
            patch = padded[None, :, r + pad : r + pad + window, c + pad : c + pad + window]
            xs = g.left + (c + np.arange(window) + 0.5) * g.resolution
            ys = g.top - (r + np.arange(window) + 0.5) * g.resolution
            inputs = {"optical": patch[:, :3], "covariates": patch[:, 3:]}
            p = model.predict_windows(inputs, xs[None], ys[None])[0]
            acc[:, r + pad : r + pad + window, c + pad : c + pad + window] += p * wt
            wsum[r + pad : r + pad + window, c + pad : c + pad + window] += wt
            c += stride
        r += stride
    prob = acc[:, pad:-pad, pad:-pad] / wsum[pad:-pad, pad:-pad]
    prob[:, ~np.isfinite(arr).all(0)] = np.nan
    return prob


@THIN_CHUNKS
def test_matches_a_plain_numpy_reference(toy):
    cube = toy_cube(height=90, width=70, chunks=40)
    maps = predict(cube, toy, window=16, stride=8).compute(scheduler="threads")
    ref = reference_map(cube, toy, 16, 8)
    got = maps.probability.values
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    assert np.nanmax(np.abs(got - ref)) <= 1e-5


@THIN_CHUNKS
def test_seamless_whatever_the_chunking_and_halo(toy):
    # y has 1030 rows so that chunks of 256, 512, 1000 and one chunk all cut it differently
    results = {}
    for chunks in (256, 512, 1000, -1):
        cube = toy_cube(height=1030, width=60, chunks={"y": chunks, "x": 32 if chunks > 0 else -1})
        maps = predict(cube, toy, window=12, stride=4)
        results[chunks] = maps.probability.values
    cube = toy_cube(height=1030, width=60, chunks=256)
    results["big halo"] = predict(cube, toy, window=12, stride=4, halo=30).probability.values
    base = results[-1]
    assert np.isnan(base).any() and np.isfinite(base).any()
    for key, got in results.items():
        assert np.array_equal(np.isnan(got), np.isnan(base)), key
        assert np.nanmax(np.abs(got - base)) <= 1e-5, key


def test_stride_that_does_not_divide_the_window_is_still_seamless(toy):
    one = predict(toy_cube(80, 64, chunks=-1), toy, window=10, stride=3).probability.values
    many = predict(toy_cube(80, 64, chunks=17), toy, window=10, stride=3).probability.values
    assert np.nanmax(np.abs(one - many)) <= 1e-5
    assert np.array_equal(np.isnan(one), np.isnan(many))


def test_predict_computes_nothing(toy):
    import dask

    calls = []

    def counting_scheduler(dsk, keys, **kwargs):
        calls.append(keys)
        return dask.get(dsk, keys, **kwargs)

    cube = toy_cube(64, 64, chunks=32)
    with dask.config.set(scheduler=counting_scheduler):
        maps = predict(cube, toy, window=8, stride=4)
        assert calls == []  # building the maps ran no task
        maps.label.values  # noqa: B018 - computing does go through the scheduler
    assert len(calls) == 1


def test_outputs_layout_and_meaning(toy):
    cube = toy_cube(64, 48, chunks=32)
    maps = predict(cube, toy, window=8, stride=4)
    assert set(maps.data_vars) == {"probability", "label", "uncertainty"}
    assert maps.probability.dims == ("category", "y", "x")
    assert list(maps["category"].values) == ["absent", "present", "unknown"]
    # the class dimension works as a keyword argument (``class`` would be a SyntaxError)
    present = maps.probability.sel(category="present")
    assert present.dims == ("y", "x")
    assert maps.probability.dtype == np.float32 and maps.uncertainty.dtype == np.float32
    assert maps.label.dtype == np.int16
    assert maps.label.attrs["flag_values"] == [0, 1, 2]
    assert maps.label.attrs["flag_meanings"] == "absent present unknown"
    assert maps.rio.crs == cube.rio.crs
    assert np.array_equal(maps.x.values, cube.x.values)
    assert np.array_equal(maps.y.values, cube.y.values)
    m = maps.compute()
    p = m.probability.values
    nodata = ~np.isfinite(np.concatenate([cube.optical.values, cube.covariates.values])).all(0)
    assert np.isnan(p[:, nodata]).all() and np.isfinite(p[:, ~nodata]).all()
    assert np.allclose(p[:, ~nodata].sum(0), 1.0, atol=1e-5)
    assert (m.label.values[nodata] == -1).all()
    assert np.array_equal(m.label.values[~nodata], np.argmax(p[:, ~nodata], axis=0))
    u = m.uncertainty.values
    assert np.isnan(u[nodata]).all()
    expected = -(p * np.log(p)).sum(0) / np.log(3)
    assert np.allclose(u[~nodata], expected[~nodata], atol=1e-5)


def test_one_output_only_and_batch_size_does_not_matter(toy):
    cube = toy_cube(48, 40, chunks=24)
    only = predict(cube, toy, window=8, stride=4, outputs=("uncertainty",), batch_size=1)
    assert list(only.data_vars) == ["uncertainty"]
    big = predict(cube, toy, window=8, stride=4, batch_size=500)
    assert np.nanmax(np.abs(only.uncertainty.values - big.uncertainty.values)) <= 1e-5
    auto = predict(cube, toy, window=8, stride=4, batch_size="auto")
    assert np.nanmax(np.abs(only.uncertainty.values - auto.uncertainty.values)) <= 1e-5


def test_auto_batch_size_follows_memory():
    from miso_xr.infer.batching import (
        CPU_BATCH_BYTES,
        CPU_MAX_BATCH,
        auto_batch_size,
        window_bytes,
    )
    from miso_xr.model import MisoModel

    tiny = MisoModel.create(_with_identity_normalisation(toy_spec(kind="miso")), "tiny", seed=0)
    # the per-window estimate grows with the window's area and the model's width
    assert window_bytes(tiny, 128) == pytest.approx(4 * window_bytes(tiny, 64), rel=0.01)
    micro = MisoModel.create(_with_identity_normalisation(toy_spec(kind="miso")), "micro", seed=0)
    assert window_bytes(micro, 64) < window_bytes(tiny, 64)
    assert auto_batch_size(micro, 16, "cpu") == CPU_MAX_BATCH  # a CPU batch is capped
    # and held to a size that runs fast on a CPU: a few of the tiny model's 64 px windows
    assert auto_batch_size(tiny, 64, "cpu") == CPU_BATCH_BYTES // window_bytes(tiny, 64)
    assert 2 <= auto_batch_size(tiny, 64, "cpu") < CPU_MAX_BATCH
    # a window bigger than the memory share runs one at a time
    assert auto_batch_size(tiny, 1 << 16, "cpu") == 1


def test_all_nodata_chunk_is_nan_everywhere(toy):
    cube = toy_cube(64, 64, chunks=32, nan_patch=False)
    cube["optical"] = cube.optical.where(cube.x > cube.x[31])  # the western chunks are nodata
    maps = predict(cube, toy, window=8, stride=4).compute()
    assert np.isnan(maps.probability.values[:, :, :32]).all()
    assert (maps.label.values[:, :32] == -1).all()
    assert np.isfinite(maps.probability.values[:, :, 32:]).all()


def test_unsaved_model_is_saved_to_the_cache_dir(tmp_path):
    model = ToyModel(toy_spec(), seed=3)
    maps = predict(toy_cube(32, 32, chunks=16), model, window=8, stride=4, cache_dir=tmp_path)
    saved = list((tmp_path / "unsaved").glob("*.safetensors"))
    assert [p.stem for p in saved] == [maps.attrs["model_sha256"]]
    assert model.sha256 is None  # the user's object is left as it was
    assert np.isfinite(maps.probability.values[:, :20]).all()


def test_mc_dropout_changes_probabilities_but_keeps_them_valid(toy):
    cube = toy_cube(32, 32, chunks=-1, nan_patch=False)
    det = predict(cube, toy, window=8, stride=4).compute()
    mc = predict(cube, toy, window=8, stride=4, mc_samples=4).compute()
    assert mc.attrs["mc_samples"] == 4
    assert np.abs(mc.probability.values - det.probability.values).max() > 1e-3
    assert np.allclose(mc.probability.values.sum(0), 1.0, atol=1e-5)
    assert not toy.net[2].training  # dropout back off after the MC passes


def test_accessor_delegates(toy):
    cube = toy_cube(32, 32, chunks=16)
    cube.miso.check(toy)
    maps = cube.miso.predict(toy, window=8, stride=4, outputs=("label",))
    assert maps.label.shape == (32, 32)


# ---- the cube check -------------------------------------------------------------------------


def test_missing_band_is_named_with_what_is_needed(toy):
    cube = toy_cube(16, 16, chunks=-1).sel(optical_band=["B04", "B02"])
    with pytest.raises(MissingBandError, match=r"cube has no band 'B03' in 'optical'") as info:
        check_cube(cube, toy.spec)
    assert "the checkpoint needs B04 B03 B02" in str(info.value)
    assert isinstance(info.value, IncompatibleCubeError)


def test_missing_modality_is_named(toy):
    cube = toy_cube(16, 16, chunks=-1).drop_vars("covariates")
    with pytest.raises(IncompatibleCubeError, match=r"no modality 'covariates'"):
        predict(cube, toy)


def test_wrong_resolution_and_crs_are_named(toy):
    coarse = toy_cube(16, 16, chunks=-1).isel(x=slice(None, None, 2), y=slice(None, None, 2))
    with pytest.raises(IncompatibleCubeError, match=r"resolution is 20 .* trained at 10"):
        check_cube(coarse, toy.spec)
    utm = toy_cube(16, 16, chunks=-1, crs="EPSG:32606")
    with pytest.raises(IncompatibleCubeError, match=r"EPSG:32606.*EPSG:3338"):
        check_cube(utm, toy.spec)


def test_not_a_dataset(toy):
    with pytest.raises(InputError, match="xr.Dataset"):
        check_cube(xr.DataArray(np.zeros((2, 2))), toy.spec)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"window": 8, "stride": 9}, "stride=9"),
        ({"window": 0}, "window=0"),
        ({"outputs": ("probability", "labels")}, "outputs="),
        ({"batch_size": 0}, "batch_size=0"),
        ({"batch_size": "big"}, "batch_size='big'"),
        ({"mc_samples": -1}, "mc_samples=-1"),
        ({"device": "gpu"}, "device='gpu'"),
        ({"window": 8, "stride": 4, "halo": 1}, "halo=1"),
    ],
)
def test_bad_arguments(toy, kwargs, message):
    with pytest.raises(InputError, match=message):
        predict(toy_cube(32, 32, chunks=16), toy, **kwargs)


def test_mc_dropout_needs_dropout(toy):
    class NoDropout(ToyModel):
        pass

    model = NoDropout(toy_spec())
    model.net = model.net[:2]  # conv + relu: no dropout layer
    with pytest.raises(InputError, match="mc_samples=2"):
        predict(toy_cube(16, 16, chunks=-1), model, mc_samples=2)


def test_the_model_runs_once_per_window_whatever_the_outputs(toy):
    from miso_xr.infer import workers

    cube = toy_cube(48, 48, chunks=16, nan_patch=False)
    workers.clear_cache()
    predict(cube, toy, window=8, stride=8, outputs=("probability",)).compute()
    (loaded,) = workers._CACHE.values()
    alone = loaded.windows_seen
    assert alone == (48 // 8 + 0) ** 2  # stride == window: one window per lattice cell
    predict(cube, toy, window=8, stride=8).compute()  # probability, label and uncertainty
    assert loaded.windows_seen == 2 * alone  # label and uncertainty reuse the probabilities


# ---- suggest_samples ------------------------------------------------------------------------


def _uncertainty_maps(height=120, width=160, chunks=40):
    import dask.array as da

    grid = Grid(
        "EPSG:3338", left=100_000.0, top=1_600_000.0, resolution=10.0, width=width, height=height
    )
    yy, xx = np.mgrid[0:height, 0:width]
    # two equally uncertain blobs, west (A) and east (B), on a certain background
    u = 0.1 + 0.8 * np.exp(-((xx - 40) ** 2 + (yy - 60) ** 2) / 200.0)
    u += 0.8 * np.exp(-((xx - 120) ** 2 + (yy - 60) ** 2) / 200.0)
    u[:20, :] = np.nan  # an unmapped strip in the north
    maps = xr.Dataset(
        {"uncertainty": (("y", "x"), da.from_array(u.astype("float32"), chunks=chunks))},
        coords={"y": grid.y, "x": grid.x},
    ).rio.write_crs(grid.crs)
    return maps, grid


def test_suggests_the_uncertain_place_far_from_observations():
    import pandas as pd

    from miso_xr.infer.uncertainty import suggest_samples

    maps, grid = _uncertainty_maps()
    obs = pd.DataFrame({"x": [grid.x[40]], "y": [grid.y[60]]})  # someone sampled blob A
    obs.attrs["crs"] = "EPSG:3338"
    sites = suggest_samples(maps, 5, observations=obs, min_distance=200.0)
    assert list(sites.columns) == [
        "x",
        "y",
        "lon",
        "lat",
        "uncertainty",
        "distance_to_nearest_observation",
        "score",
    ]
    first = sites.iloc[0]
    assert abs(first.x - grid.x[120]) <= 30 and abs(first.y - grid.y[60]) <= 30  # blob B
    assert sites.score.is_monotonic_decreasing
    xy = sites[["x", "y"]].to_numpy()
    gaps = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    assert gaps[np.triu_indices(len(xy), 1)].min() >= 200.0  # spread out
    assert (sites.y < grid.y[19]).all()  # never in the unmapped strip
    assert np.allclose(
        sites.distance_to_nearest_observation,
        np.hypot(sites.x - obs.x[0], sites.y - obs.y[0]),
    )
    assert ((sites.lon > -180) & (sites.lon < -100) & (sites.lat > 40)).all()


def test_suggest_samples_coarsens_and_can_target_gaps():
    maps, grid = _uncertainty_maps()
    sites = maps.miso.suggest_samples(3, max_cells=300, exclude_nodata=False, min_distance=0)
    assert sites.attrs["block_pixels"] == 8  # ceil(sqrt(120 * 160 / 300)): 15 x 20 blocks
    assert sites.distance_to_nearest_observation.isna().all()
    # unmapped blocks count as fully uncertain: the first sites fall in the northern strip
    assert (sites.uncertainty == 1.0).all() and (sites.y > grid.y[21]).all()


def test_observations_in_another_crs_are_reprojected():
    import pandas as pd
    from pyproj import Transformer

    from miso_xr.infer.uncertainty import suggest_samples

    maps, grid = _uncertainty_maps()
    to_ll = Transformer.from_crs("EPSG:3338", "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform(grid.x[120], grid.y[60])  # now blob B has the observation
    obs = pd.DataFrame({"x": [lon], "y": [lat]})
    obs.attrs["crs"] = "EPSG:4326"
    first = suggest_samples(maps, 1, observations=obs).iloc[0]
    assert abs(first.x - grid.x[40]) <= 30  # blob A


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.miso.suggest_samples(0), "n=0"),
        (lambda m: m.rename(uncertainty="u").miso.suggest_samples(2), "no 'uncertainty'"),
        (lambda m: m.miso.suggest_samples(2, observations=[(1, 2)]), "x and y columns"),
        (lambda m: m.miso.suggest_samples(2, min_distance=-5), "min_distance=-5"),
        (lambda m: (m * np.nan).miso.suggest_samples(2), "no mapped pixel"),
    ],
)
def test_suggest_samples_bad_inputs(call, message):
    maps, _ = _uncertainty_maps()
    with pytest.raises(InputError, match=message):
        call(maps)


# ---- the real models: MisoModel and the Random Forest -------------------------------------------


def _small_miso(spec_window=32):
    from miso_xr.model import MisoConfig, MisoModel

    config = MisoConfig.named("micro").replace(
        crop=spec_window,
        dropout=0.2,
    )
    spec = toy_spec(
        window=spec_window, stride=spec_window // 2, classes=("absent", "present"), kind="miso"
    )
    # the location prior (an option): these tests check that coordinates reach the model
    spec = ModelSpec(**{**_with_identity_normalisation(spec).__dict__, "location": True})
    return MisoModel.create(spec, config, seed=0)


@pytest.mark.slow  # ~5-12 s on 2 shared cores: MISO queries its LIIF at every pixel of a window
@THIN_CHUNKS
def test_miso_model_maps_are_seamless_and_lazy(tmp_path, raise_if_dask_computes):
    model = _small_miso()
    model.save(tmp_path / "miso.safetensors")
    with raise_if_dask_computes():
        one = predict(toy_cube(48, 40, chunks=-1), model)
        many = predict(toy_cube(48, 40, chunks={"y": 24, "x": 20}), model)
    a, b = one.probability.values, many.probability.values
    assert np.isfinite(a).any() and np.array_equal(np.isnan(a), np.isnan(b))
    assert np.nanmax(np.abs(a - b)) <= 1e-5
    assert list(one["category"].values) == ["absent", "present"]
    mc = predict(toy_cube(32, 32, chunks=-1, nan_patch=False), model, mc_samples=2).compute()
    assert np.allclose(mc.probability.values.sum(0), 1, atol=1e-5)


@THIN_CHUNKS
def test_location_prior_is_computed_once_per_block_and_maps_the_same(monkeypatch):
    from miso_xr.model.miso import MisoModel

    model = _small_miso()
    cube = toy_cube(48, 40, chunks={"y": 24, "x": 20})
    grids = []
    per_block = MisoModel.location_prior

    def spy(self, x, y, **kw):
        grids.append((len(y), len(x)))
        return per_block(self, x, y, **kw)

    monkeypatch.setattr(MisoModel, "location_prior", spy)
    lazy = predict(cube, model)
    shared = lazy.compute()
    # one grid per chunk of the map, over the chunk and its halo
    ychunks, xchunks = lazy.probability.chunks[1:]
    plan = WindowPlan(window=32, stride=16)
    hy, hx = plan.halo_for(ychunks), plan.halo_for(xchunks)
    want = [(h + 2 * hy, w + 2 * hx) for h in ychunks for w in xchunks]
    assert len(want) > 1 and sorted(grids) == sorted(want)
    monkeypatch.setattr(MisoModel, "location_prior", lambda self, x, y, **kw: None)
    each = predict(cube, model).compute()  # the prior inside every window, as before
    a, b = shared.probability.values, each.probability.values
    assert np.isfinite(a).any() and np.array_equal(np.isnan(a), np.isnan(b))
    assert np.nanmax(np.abs(a - b)) <= 1e-5


@THIN_CHUNKS
def test_random_forest_through_predict(tmp_path):
    import pandas as pd

    from miso_xr.observations import read_observations
    from miso_xr.training.baseline import RandomForestBaseline

    cube = toy_cube(60, 50, chunks=-1)
    g = Grid.from_dataset(cube)
    rng = np.random.default_rng(0)
    r, c = rng.integers(0, 50, 80), rng.integers(0, 50, 80)
    elev = cube.covariates.values[0, r, c]
    df = pd.DataFrame({"x": g.x[c], "y": g.y[r], "permafrost": (elev > 200).astype(int)})
    obs = read_observations(df.drop_duplicates(["x", "y"]), crs=g.crs)
    rf = RandomForestBaseline(n_estimators=5, features=["optical", "covariates"], seed=0)
    rf.fit(cube, obs)
    one = predict(cube, rf, window=16, stride=16, cache_dir=tmp_path).compute()
    many = predict(toy_cube(60, 50, chunks=20), rf, window=16, stride=8, cache_dir=tmp_path)
    # a per-pixel forest: the same map whatever the windows and chunks
    assert np.nanmax(np.abs(one.probability.values - many.probability.values)) <= 1e-6
    valid = np.isfinite(one.probability.values[0])
    direct = rf.predict_windows(
        {m: cube[m].values[None] for m, _ in rf.spec.modalities}, g.x[None], g.y[None]
    )[0]
    assert np.allclose(one.probability.values[:, valid], direct[:, valid], atol=1e-6)
