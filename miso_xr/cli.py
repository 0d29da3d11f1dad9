"""``miso-xr``: demo | predict | pretrain | train | evaluate | hub (the package's only command line).

Each subcommand is a thin layer over the public functions; ``miso-xr hub ...`` has its own parser
(:func:`hub_main`, over :mod:`miso_xr.hub`). Errors print one line naming the command-line flag
(``--overwrite``, not ``overwrite=True``) and exit 2; Ctrl-C prints one line and exits 130
(``128 + SIGINT``, as shells do), since every output is written atomically or resumably and
rerunning resumes.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .demo import DEMO_EPOCHS
from .exceptions import InputError, MisoError

__all__ = ["hub_main", "main"]


def _rasters(specs: Sequence[str]) -> dict[str, dict[str, str]]:
    """``modality:band=path`` strings -> the mapping open_rasters takes."""
    out: dict[str, dict[str, str]] = {}
    for spec in specs:
        try:
            head, path = spec.split("=", 1)
            modality, band = head.split(":", 1)
        except ValueError:
            raise InputError(
                f"--raster {spec!r}: expected MODALITY:BAND=PATH, e.g. covariates:elevation=dem.tif"
            ) from None
        out.setdefault(modality, {})[band] = path
    return out


def _open_cube(args: argparse.Namespace):
    import miso_xr

    chunks = args.chunks
    if args.raster:
        if args.bbox:
            raise InputError("give either --raster files or --bbox with a catalog, not both")
        return miso_xr.open_rasters(_rasters(args.raster), chunks=chunks)
    if not args.bbox:
        raise InputError("give --bbox LON0 LAT0 LON1 LAT1 (with --catalog) or --raster files")
    return miso_xr.open_stac(
        bbox=tuple(args.bbox),
        datetime=args.datetime,
        catalog=args.catalog,
        modalities=tuple(args.modalities),
        crs=args.crs,
        resolution=args.resolution,
        chunks=chunks,
    )


def _add_cube_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cube (a STAC catalog and bbox, or local rasters)")
    g.add_argument("--raster", action="append", default=[], metavar="MODALITY:BAND=PATH")
    g.add_argument("--bbox", nargs=4, type=float, metavar=("LON0", "LAT0", "LON1", "LAT1"))
    g.add_argument("--datetime", default="2019-06-15/2023-08-15")
    g.add_argument(
        "--catalog", default="planetary-computer", help="planetary-computer, earth-search or a URL"
    )
    g.add_argument("--modalities", nargs="+", default=["optical", "covariates"])
    g.add_argument("--crs", default="EPSG:3338")
    g.add_argument("--resolution", type=float, default=10.0)
    g.add_argument(
        "--chunks",
        type=_chunks_arg,
        default=1024,
        help='pixels along y and x, -1 (one chunk) or "auto" (default: 1024)',
    )


def _chunks_arg(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected pixels (an integer), -1 or 'auto'"
        ) from None


def _model_names(sources: Sequence[str]) -> list[str]:
    """Display names: each checkpoint's file name without its suffix (``perm`` for
    ``runs/perm.safetensors`` or a URL); the source as given when two files share a name."""
    names = [Path(s.rstrip("/").rsplit("/", 1)[-1].split("?", 1)[0]).stem or s for s in sources]
    return [s if names.count(n) > 1 else n for n, s in zip(names, sources)]


def _setup(args: argparse.Namespace) -> None:
    """--quiet and --threads, before any work."""
    if getattr(args, "quiet", False):
        from ._progress import set_quiet

        set_quiet()
    threads = getattr(args, "threads", None)
    if threads is not None:
        if threads < 1:
            raise InputError(f"--threads {threads}: expected 1 or more")
        import dask

        dask.config.set(num_workers=threads)  # the local threaded scheduler
        try:
            import torch
        except ImportError:  # pragma: no cover - torch is a dependency
            return
        torch.set_num_threads(threads)


#: Python keyword phrasings in messages -> the flag that does the same on the command line
_CLI_WORDS = (
    (re.compile(r"\bmode='w' \(overwrite=True\)"), "--overwrite"),
    (re.compile(r"\boverwrite=True\b"), "--overwrite"),
    (re.compile(r"\bindependent=True\b"), "--independent"),
    (re.compile(r"evaluate\(\[refit_factory\(model\)\], cube, obs, folds=\.\.\.\)"), "--refit"),
)

#: what --out's suffix selects
_WRITERS = {".zarr": "zarr", ".tif": "cog", ".tiff": "cog"}


def _cli_words(message: str) -> str:
    for pattern, flag in _CLI_WORDS:
        message = pattern.sub(flag, message)
    return message


def _writer(out: str) -> str:
    """``zarr`` or ``cog`` from ``--out``'s suffix; anything else is refused before any work."""
    suffix = Path(out.rstrip("/")).suffix.lower()
    if suffix in _WRITERS:
        return _WRITERS[suffix]
    hint = (
        "; NetCDF is not written here (no netCDF4/h5netcdf): write map.zarr, then "
        "xr.open_zarr('map.zarr').to_netcdf('map.nc')"
        if suffix in (".nc", ".nc4", ".netcdf")
        else ""
    )
    raise InputError(
        f"--out {out!r}: the suffix {suffix or '(none)'!r} names no map format; use .zarr "
        f"(resumable Zarr store) or .tif/.tiff (Cloud-Optimised GeoTIFF){hint}"
    )


def _client(address: str | None):
    if not address:
        return None
    from distributed import Client

    return Client(address)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, seed=args.seed, size=args.size, epochs=args.epochs)
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    import miso_xr

    writer = _writer(args.out)  # refuse a wrong suffix before opening anything
    cube = _open_cube(args)
    model = miso_xr.load(args.model, hub=args.hub or None)
    maps = cube.miso.predict(model, window=args.window, stride=args.stride, device=args.device)
    client = _client(args.scheduler)
    try:
        if writer == "cog":
            maps.miso.to_cog(args.out, overwrite=args.overwrite)
        else:
            # an existing store of the same maps is resumed; --overwrite starts it afresh
            maps.miso.to_zarr(args.out, overwrite=args.overwrite)
    finally:
        if client is not None:
            client.close()
    print(f"wrote {args.out}")
    if args.figure:
        import xarray as xr

        from .figures import plot_maps

        written = xr.open_zarr(args.out) if writer == "zarr" else maps
        obs = None
        if args.observations:
            obs = miso_xr.read_observations(args.observations, label=args.label, cube=cube)
        plot_maps(written, args.figure, observations=obs, overwrite=args.overwrite)
        print(f"wrote {args.figure}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import miso_xr

    cube = _open_cube(args)
    obs = miso_xr.read_observations(args.observations, label=args.label, task=args.task, cube=cube)
    print(obs.attrs.get("report", ""))
    model = miso_xr.train(
        cube,
        obs,
        task=args.task,
        config=args.config,
        epochs=args.epochs,
        seed=args.seed,
        backbone=args.backbone,
        location=args.location,
    )
    digest = model.save(args.out)
    print(f"wrote {args.out} (sha256 {digest})")
    return 0


def _cmd_pretrain(args: argparse.Namespace) -> int:
    import miso_xr

    cube = _open_cube(args)
    backbone = miso_xr.pretrain(
        cube,
        config=args.config,
        epochs=args.epochs,
        crops_per_epoch=args.crops,
        out=args.out,
        seed=args.seed,
    )
    print(
        f"wrote {backbone.path} (sha256 {backbone.sha256}); train with --backbone {backbone.path}"
    )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import miso_xr

    from .training.evaluate import refit_factory

    cube = _open_cube(args)
    obs = miso_xr.read_observations(args.observations, label=args.label, task=args.task, cube=cube)
    models = [miso_xr.load(m, hub=args.hub or None) for m in args.models]
    folds = None
    if args.refit:
        # honest spatial CV: each saved model is retrained per fold with its recorded settings
        models = [refit_factory(m) for m in models]
        folds = miso_xr.spatial_folds(obs, distance=args.fold_distance, k=args.k, seed=args.seed)
    report = miso_xr.evaluate(
        models,
        cube,
        obs,
        folds=folds,
        regions=args.regions,
        names=_model_names(args.models),
        distance=args.fold_distance,
        independent=args.independent,
    )
    for name in report.models:
        print(f"{name}: {report.protocols.get(name, '')}")
    print(report.summary()[["text", "pooled"]].to_string())
    if args.out:
        report.plot(args.out)
        print(f"wrote {args.out}")
    return 0


def _add_hub_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--hub",
        action="append",
        default=[],
        metavar="URL_OR_DIR",
        help="a hub index (URL or directory) to find model names in, before MISO_XR_HUBS; "
        "repeatable",
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="miso-xr", description="Fine-scale permafrost and soil maps with MISO."
    )
    sub = p.add_subparsers(dest="command", required=True)
    # options every subcommand takes (after its name: miso-xr train --quiet ...)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--quiet", action="store_true", help="no progress bars (the default when not in a terminal)"
    )
    common.add_argument(
        "--threads",
        type=int,
        help="threads for torch and dask's local scheduler (default: all cores). On a machine "
        "shared with other jobs, 1 trained the tiny models ~7x faster than torch's default",
    )
    seed = argparse.ArgumentParser(add_help=False)
    seed.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")

    d = sub.add_parser(
        "demo", parents=[common], help="the main job on the embedded synthetic scene, offline"
    )
    d.add_argument("--out", default="miso_demo", help="output folder (default: miso_demo)")
    d.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    d.add_argument("--size", type=int, default=384, help="scene side in pixels (10 m)")
    d.add_argument(
        "--epochs",
        type=int,
        default=DEMO_EPOCHS,
        help=f"training epochs (default: {DEMO_EPOCHS}, the 4-minute budget)",
    )
    d.set_defaults(func=_cmd_demo)

    pr = sub.add_parser(
        "predict", parents=[common], help="predict maps to Zarr (resumable) or a COG"
    )
    _add_cube_args(pr)
    pr.add_argument("--model", required=True, help="checkpoint path, URL or hub name")
    pr.add_argument("--out", required=True, help="map.zarr or map.tif")
    pr.add_argument("--window", type=int)
    pr.add_argument("--stride", type=int)
    pr.add_argument("--device", default="auto")
    pr.add_argument("--scheduler", help="a distributed scheduler address (default: threads)")
    pr.add_argument("--overwrite", action="store_true", help="replace an existing output")
    pr.add_argument("--figure", help="also draw the maps to this PNG (label, probability, ...)")
    pr.add_argument("--observations", help="points to draw on --figure (CSV, GeoJSON, ...)")
    pr.add_argument("--label", help="label column of --observations")
    _add_hub_arg(pr)
    pr.set_defaults(func=_cmd_predict)

    t = sub.add_parser("train", parents=[common, seed], help="train MISO on field observations")
    _add_cube_args(t)
    t.add_argument("--observations", required=True, help="CSV, GeoJSON or GeoPackage")
    t.add_argument("--label", required=True, help="label column")
    t.add_argument("--task", default=None, help="permafrost, soil_order or a name")
    t.add_argument("--config", default="tiny", help="tiny or base")
    t.add_argument("--epochs", type=int)
    t.add_argument(
        "--backbone", help="pretrained encoders: hub name, path or URL (default: from scratch)"
    )
    t.add_argument(
        "--location",
        default="contrastive",
        choices=["contrastive", "prior", "off"],
        help="contrastive (the paper), prior (adds location logits: a departure) or off",
    )
    t.add_argument("--out", required=True, help="checkpoint .safetensors")
    t.set_defaults(func=_cmd_train)

    pt = sub.add_parser(
        "pretrain",
        parents=[common, seed],
        help="self-supervised pretraining of the encoders on unlabelled crops",
    )
    _add_cube_args(pt)
    pt.add_argument("--config", default="tiny", help="micro, tiny or base (train with the same)")
    pt.add_argument("--epochs", type=int, default=10)
    pt.add_argument("--crops", type=int, default=256, help="fresh crops drawn per epoch")
    pt.add_argument("--out", required=True, help="backbone .safetensors (resumes if interrupted)")
    pt.set_defaults(func=_cmd_pretrain)

    e = sub.add_parser(
        "evaluate",
        parents=[common, seed],
        help="scores of saved models on points they never saw, or per-fold refits (--refit)",
        description="Score saved models (named after their files). By default each is scored "
        "once, on the observations farther than --fold-distance from every point the models "
        "were trained on (their checkpoints record these points). --refit retrains each model "
        "per spatial fold with the settings its checkpoint records: spatial cross-validation, "
        "mean ± std over folds.",
    )
    _add_cube_args(e)
    e.add_argument("--models", nargs="+", required=True)
    e.add_argument("--observations", required=True)
    e.add_argument("--label", required=True)
    e.add_argument("--task", default=None)
    e.add_argument(
        "--fold-distance",
        type=float,
        default=1000.0,
        help="metres: spatial fold clustering (--refit), and the least distance between a "
        "scored point and a training point of a saved model (default 1000)",
    )
    e.add_argument("-k", type=int, default=5, help="folds for --refit")
    e.add_argument(
        "--refit", action="store_true", help="retrain per fold: spatial cross-validation"
    )
    e.add_argument(
        "--independent",
        action="store_true",
        help="the observations were not used to train models that record no training points",
    )
    _add_hub_arg(e)
    e.add_argument("--regions", help="polygons (e.g. ecoregions.shp) for a per-region table")
    e.add_argument("--out", help="figure PNG")
    e.set_defaults(func=_cmd_evaluate)

    h = sub.add_parser("hub", help="list | fetch | verify | publish | convert checkpoints")
    h.add_argument("hub_args", nargs=argparse.REMAINDER)
    h.set_defaults(func=None)
    return p


# --------------------------------------------------------------------------------------------
# miso-xr hub list | fetch | verify | publish | convert


def _hub_parser() -> argparse.ArgumentParser:
    from .hub.settings import ENTRY_KINDS, ENV_CACHE

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--hub", action="append", help="hub index URL or directory (repeatable)")
    common.add_argument("--cache-dir", help=f"cache directory (default ${ENV_CACHE} or XDG)")
    common.add_argument("--offline", action="store_true", default=None, help="cache only")
    common.add_argument("--timeout", type=float, default=30, help="connect/read timeout, s")
    p = argparse.ArgumentParser(
        prog="miso-xr hub", description="List, fetch, verify, publish and convert checkpoints."
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("list", parents=[common], help="entries of every hub searched")
    s.add_argument("--json", action="store_true", help="print the entries as JSON")
    s = sub.add_parser("fetch", parents=[common], help="download and verify into the cache")
    s.add_argument("source", help="NAME[@VERSION] or URL")
    s.add_argument("--sha256", help="expected sha256 (for plain URLs)")
    s = sub.add_parser("verify", parents=[common], help="check hash, size, header, metadata")
    s.add_argument("sources", nargs="*", help="NAME, PATH or URL (none: every cached file)")
    s = sub.add_parser("publish", parents=[common], help="add a checkpoint to a directory hub")
    s.add_argument("checkpoint")
    s.add_argument("hub_dir")
    s.add_argument("--name", required=True)
    s.add_argument("--version", required=True)
    s.add_argument("--licence", "--license", dest="licence", required=True)
    s.add_argument("--description", default="")
    s.add_argument("--kind", choices=ENTRY_KINDS, default="model")
    s = sub.add_parser("convert", help="pickle (.pt/.pth/.ckpt) -> .safetensors, tensors only")
    s.add_argument("src")
    s.add_argument("dst")
    return p


def hub_main(argv: list[str] | None = None) -> int:
    """``miso-xr hub ...``; returns the exit status (0 ok, 1 a check failed or an error).

    Examples
    --------
    >>> hub_main(["list", "--offline"])                                      # doctest: +SKIP
    0
    """
    from .hub import (
        VerifyReport,
        convert,
        fetch,
        get_cache_dir,
        hub_locations,
        list_entries,
        publish,
        verify,
    )
    from .hub.settings import _SHA

    args = _hub_parser().parse_args(argv)
    opts: dict[str, Any] = {}
    if args.command != "convert":
        opts = {"offline": args.offline, "cache_dir": args.cache_dir, "timeout": args.timeout}
    try:
        if args.command == "list":
            entries = list_entries(hub=args.hub, **opts)
            if args.json:
                print(json.dumps([e.to_dict() for e in entries], indent=2))
            elif not entries:
                print(f"no entries in {hub_locations(args.hub)}")
            for e in [] if args.json else entries:
                print(f"{e.ref:32} {e.kind:8} {e.size:>12,} B  {e.licence:12} {e.description}")
            return 0
        if args.command == "fetch":
            started = time.perf_counter()
            path = fetch(args.source, sha256=args.sha256, hub=args.hub, **opts)
            print(f"{args.source} -> {path} ({time.perf_counter() - started:.1f} s)")
            return 0
        if args.command == "verify":
            sources: list[str] = list(args.sources)
            if not sources:
                blobs = get_cache_dir(args.cache_dir) / "blobs"
                sources = sorted(str(p) for p in blobs.glob("*.safetensors"))
            bad = 0
            for s in sources:
                report = verify(s, hub=args.hub, **opts)
                problems = list(report.problems)
                # a cached blob is named by its hash: the name is what it must match
                stem = Path(s).stem
                if _SHA.match(stem) and stem != report.sha256:
                    problems.append(f"cached as {stem} but its sha256 is {report.sha256}")
                    report = VerifyReport(**{**report.__dict__, "problems": tuple(problems)})
                print(report)
                bad += not report.ok
            print(f"{len(sources) - bad} ok, {bad} bad")
            return 1 if bad else 0
        if args.command == "publish":
            entry = publish(
                args.checkpoint,
                args.hub_dir,
                name=args.name,
                version=args.version,
                licence=args.licence,
                description=args.description,
                kind=args.kind,
            )
            print(f"published {entry.ref} ({entry.sha256}) in {entry.index}")
            return 0
        print(convert(args.src, args.dst))
        return 0
    except MisoError as err:
        print(f"miso-xr hub {args.command}: {err}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------------------------
# miso-xr


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["hub"]:
        try:
            return hub_main(argv[1:])
        except KeyboardInterrupt:
            print("miso-xr hub: interrupted; rerun the same command to resume", file=sys.stderr)
            return 130
    args = _parser().parse_args(argv)
    try:
        _setup(args)
        return args.func(args)
    except MisoError as err:
        print(f"miso-xr {args.command}: {_cli_words(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # outputs are atomic (checkpoints, COGs) or resumable (Zarr): nothing half-written
        # stands as finished, and the same command continues where it stopped
        print(
            f"miso-xr {args.command}: interrupted; rerun the same command to resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
