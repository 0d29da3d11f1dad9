"""``miso-xr``: demo | predict | train | evaluate | hub (the package's only command line).

Each subcommand is a thin layer over the public functions; ``miso-xr hub ...`` has its own parser
(:func:`hub_main`, over :mod:`miso_xr.hub`).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

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

    cube = _open_cube(args)
    model = miso_xr.load(args.model)
    maps = cube.miso.predict(model, window=args.window, stride=args.stride, device=args.device)
    client = _client(args.scheduler)
    try:
        out = Path(args.out)
        if out.suffix.lower() in (".tif", ".tiff"):
            maps.miso.to_cog(str(out), overwrite=args.overwrite)
        else:
            # an existing store of the same maps is resumed; --overwrite starts it afresh
            maps.miso.to_zarr(str(out), overwrite=args.overwrite)
    finally:
        if client is not None:
            client.close()
    print(f"wrote {args.out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    import miso_xr

    cube = _open_cube(args)
    obs = miso_xr.read_observations(args.observations, label=args.label, task=args.task, cube=cube)
    print(obs.attrs.get("report", ""))
    model = miso_xr.train(
        cube, obs, task=args.task, config=args.config, epochs=args.epochs, seed=args.seed
    )
    digest = model.save(args.out)
    print(f"wrote {args.out} (sha256 {digest})")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import miso_xr

    cube = _open_cube(args)
    obs = miso_xr.read_observations(args.observations, label=args.label, task=args.task, cube=cube)
    models = [miso_xr.load(m) for m in args.models]
    folds = miso_xr.spatial_folds(obs, distance=args.fold_distance, k=args.k, seed=args.seed)
    report = miso_xr.evaluate(
        models, cube, obs, folds=folds, regions=args.regions, names=_model_names(args.models)
    )
    print(report.summary().to_string())
    if args.out:
        report.plot(args.out)
        print(f"wrote {args.out}")
    return 0


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
    d.add_argument("--epochs", type=int, default=12)
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
    pr.set_defaults(func=_cmd_predict)

    t = sub.add_parser("train", parents=[common, seed], help="train MISO on field observations")
    _add_cube_args(t)
    t.add_argument("--observations", required=True, help="CSV, GeoJSON or GeoPackage")
    t.add_argument("--label", required=True, help="label column")
    t.add_argument("--task", default=None, help="permafrost, soil_order or a name")
    t.add_argument("--config", default="tiny", help="tiny or base")
    t.add_argument("--epochs", type=int)
    t.add_argument("--out", required=True, help="checkpoint .safetensors")
    t.set_defaults(func=_cmd_train)

    e = sub.add_parser(
        "evaluate",
        parents=[common, seed],
        help="spatial cross-validated scores of saved models (named after their files)",
    )
    _add_cube_args(e)
    e.add_argument("--models", nargs="+", required=True)
    e.add_argument("--observations", required=True)
    e.add_argument("--label", required=True)
    e.add_argument("--task", default=None)
    e.add_argument("--fold-distance", type=float, default=1000.0)
    e.add_argument("-k", type=int, default=5)
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
        return hub_main(argv[1:])
    args = _parser().parse_args(argv)
    try:
        _setup(args)
        return args.func(args)
    except MisoError as err:
        print(f"miso-xr {args.command}: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
