"""The main job, on the embedded synthetic scene, offline: ``miso-xr demo`` / ``make demo``.

1. generate the synthetic Alaska-like scene and write it as COGs and STAC items;
2. serve it through a loopback STAC API (``rustac serve``) and a range-capable file server;
3. build the cube with :func:`miso_xr.open_stac` (optical, SAR, terrain covariates);
4. read the field observations, hold out spatial blocks for testing;
5. train a tiny MISO and the Random Forest on the rest; save the checkpoint and load it back;
6. predict maps through Dask, write Zarr and a COG, evaluate on the held-out blocks and against
   the hidden truth, suggest where to sample next, and draw one figure.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._progress import show_progress

__all__ = ["DEMO_EPOCHS", "DemoResult", "run_demo"]

#: training epochs of the demo: validation picks an early epoch, and the run fits 4 minutes
DEMO_EPOCHS = 4


@dataclass
class DemoResult:
    """Where the demo wrote things, and its scores."""

    out: Path
    checkpoint: Path
    zarr: Path
    cog: Path
    figure: Path
    metrics: dict[str, Any] = field(default_factory=dict)


def _log(msg: str, t0: float) -> None:
    print(f"[{time.perf_counter() - t0:6.1f} s] {msg}", flush=True)


def run_demo(
    out: str | Path = "miso_demo",
    *,
    seed: int = 0,
    size: int = 384,
    epochs: int | None = DEMO_EPOCHS,
    progress: bool | None = None,
) -> DemoResult:
    """Run the main job end to end and return where its outputs are.

    >>> result = run_demo("miso_demo", size=256)  # doctest: +SKIP
    >>> result.metrics["MISO"]["balanced_accuracy"]  # doctest: +SKIP
    """
    import numpy as np
    from dask.diagnostics import ProgressBar

    import miso_xr
    from miso_xr.datasets.serving import range_server, stac_api
    from miso_xr.datasets.synthetic import make_scene, write_scene, write_stac

    t0 = time.perf_counter()
    out = Path(out)
    scene = make_scene(seed=seed, size=size)  # validates seed and size before anything is written
    out.mkdir(parents=True, exist_ok=True)
    scene_dir = out / "scene"
    write_scene(scene, scene_dir)
    _log(f"synthetic scene {size}x{size} px at 10 m written to {scene_dir}", t0)

    with range_server(scene_dir) as files:
        hrefs = write_stac(scene_dir, files.url)
        with stac_api(hrefs) as api:
            _log(f"serving the scene: STAC API {api.url}, COGs {files.url}", t0)
            cube = miso_xr.open_stac(
                grid=scene.grid,  # the scene's own grid, so maps compare pixel for pixel
                datetime="2019-06-01/2023-08-31",
                season=("06-01", "08-31"),
                catalog=api.url,
                modalities=("optical", "sar", "covariates"),
                chunks=128,
            )
            # the servers stop when this block ends: bring the (small) cube into memory first
            with ProgressBar() if show_progress(progress) else contextlib.nullcontext():
                cube = cube.persist()
    cube = cube.sel(
        x=slice(scene.grid.x[0], scene.grid.x[-1]), y=slice(scene.grid.y[0], scene.grid.y[-1])
    )
    _log(f"cube: {dict(cube.sizes)}, modalities {list(cube.data_vars)}", t0)

    obs = miso_xr.read_observations(scene_dir / "observations.csv", label="permafrost", cube=cube)
    print(obs.attrs.get("report", ""))
    folds = miso_xr.spatial_folds(obs, distance=500, k=5, method="block", seed=seed)
    test_mask = (folds == 0).to_numpy()
    train_obs, test_obs = obs[~test_mask], obs[test_mask]
    _log(f"{len(train_obs)} training and {len(test_obs)} held-out observations", t0)

    model = miso_xr.train(
        cube,
        train_obs,
        task="permafrost",
        config="tiny",
        epochs=epochs,
        seed=seed,
        progress=progress,
    )
    rf = miso_xr.RandomForestBaseline(n_estimators=200, seed=seed).fit(cube, train_obs)
    checkpoint = out / "permafrost_tiny.safetensors"
    model.save(checkpoint)
    # the way a team shares weights: publish into a directory hub, serve it over HTTP, load the
    # entry by name (downloaded, sha256-verified, cached)
    import shutil

    from miso_xr.hub import publish

    for stale in (out / "hub", out / "cache"):  # the demo's own hub: a rerun starts it afresh
        shutil.rmtree(stale, ignore_errors=True)
    entry = publish(
        checkpoint,
        out / "hub",
        name="demo-permafrost-tiny",
        version=f"seed{seed}",
        licence="MIT",
        description="tiny MISO trained on the synthetic demo scene (not for real use)",
    )
    with range_server(out / "hub") as hub_server:
        model = miso_xr.load(entry.name, hub=hub_server.url, cache_dir=out / "cache")
    _log(
        f"trained; published {entry.name} to {out / 'hub'} and loaded it back over HTTP "
        f"(sha256 {model.sha256[:12]})",
        t0,
    )

    maps = cube.miso.predict(model)
    zarr_path = out / "permafrost.zarr"
    maps.miso.to_zarr(str(zarr_path), overwrite=True, progress=progress)
    cog_path = out / "permafrost_probability.tif"
    import xarray as xr

    maps = xr.open_zarr(zarr_path)
    maps.miso.to_cog(str(cog_path), variable="probability", overwrite=True, progress=progress)
    with ProgressBar() if show_progress(progress) else contextlib.nullcontext():
        rf_maps = cube.miso.predict(rf).compute()
    _log(f"maps written: {zarr_path}, {cog_path}", t0)

    report = miso_xr.evaluate([model, rf], cube, test_obs, names=["MISO", "RF"])
    summary = report.summary()
    report.plot(out / "scores.png")
    truth = scene.truth("permafrost").values
    pooled = summary["pooled"]
    metrics: dict[str, Any] = {
        name: {
            metric: float(pooled[(name, metric)]) for metric in _SHOWN if (name, metric) in pooled
        }
        for name in ("MISO", "RF")
    }
    for name, m in (("MISO", maps), ("RF", rf_maps)):
        label = np.asarray(m["label"].values)
        valid = label >= 0
        # every pixel of the scene against the hidden truth, not only the observed points
        metrics[name]["map_accuracy_vs_truth"] = float((label[valid] == truth[valid]).mean())
    samples = maps.miso.suggest_samples(12, observations=obs)
    figure = out / "demo.png"
    _figure(figure, scene, maps, rf_maps, samples, obs, metrics)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=str))
    print(summary.to_string())
    _log(
        "done. outputs:\n"
        f"  checkpoint  {checkpoint}\n  zarr maps   {zarr_path}\n  COG         {cog_path}\n"
        f"  figure      {figure}\n  scores      {out / 'scores.png'}\n"
        f"  metrics     {out / 'metrics.json'}\n  hub         {out / 'hub'}",
        t0,
    )
    return DemoResult(out, checkpoint, zarr_path, cog_path, figure, metrics)


_SHOWN = ("accuracy", "balanced_accuracy", "f1_macro", "roc_auc")


def _figure(path, scene, maps, rf_maps, samples, obs, metrics) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    extent = [
        scene.grid.bounds[0],
        scene.grid.bounds[2],
        scene.grid.bounds[1],
        scene.grid.bounds[3],
    ]
    # the score table needs about half a map panel's width: a full fifth left a third empty
    fig, axes = plt.subplots(
        1, 5, figsize=(22, 5.2), constrained_layout=True, width_ratios=[1, 1, 1, 1, 0.8]
    )
    panels = [
        ("hidden truth: permafrost", scene.truth("permafrost").values, "viridis"),
        ("MISO P(permafrost)", maps["probability"].sel(category="present").values, "viridis"),
        ("RF P(permafrost)", rf_maps["probability"].sel(category="present").values, "viridis"),
        ("MISO uncertainty + suggested samples", maps["uncertainty"].values, "magma"),
    ]
    for ax, (title, img, cmap) in zip(axes, panels):
        im = ax.imshow(img, extent=extent, cmap=cmap, vmin=0, vmax=1)
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(im, ax=ax, shrink=0.7)
    axes[0].scatter(obs["x"], obs["y"], s=3, c="white", label="observations")
    axes[0].legend(loc="lower right", fontsize=8)
    axes[3].scatter(
        samples["x"],
        samples["y"],
        s=90,
        marker="o",
        facecolors="none",
        edgecolors="cyan",
        linewidths=2,
    )
    axes[4].axis("off")
    rows = sorted({k for scores in metrics.values() for k in scores})
    w = max(len(k) for k in [*rows, "held-out points"]) + 1
    lines = [f"{'held-out points':<{w}}{'MISO':>6}{'RF':>6}"]
    lines += [
        f"{k:<{w}}{metrics['MISO'].get(k, float('nan')):>6.3f}{metrics['RF'].get(k, float('nan')):>6.3f}"
        for k in rows
    ]
    axes[4].text(0.0, 0.5, "\n".join(lines), va="center", family="monospace", fontsize=9.5)
    fig.savefig(path, dpi=90)
    plt.close(fig)
