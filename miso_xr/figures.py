"""A figure of a user's maps: label, probability, uncertainty, and field points if given.

``maps.miso.plot("map.png")`` and ``miso-xr predict --figure map.png`` call :func:`plot_maps`.
Large maps are thinned to about ``max_pixels`` per side before drawing (every n-th pixel, so
a statewide map draws from a few MB, not from every chunk).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .exceptions import InputError

__all__ = ["plot_maps"]


def _class_dim(prob: xr.DataArray) -> str:
    extra = [d for d in prob.dims if d not in ("y", "x")]
    if len(extra) != 1:
        raise InputError(
            f"probability has dims {prob.dims}; expected (<class dim>, y, x) as predict gives"
        )
    return extra[0]


def plot_maps(
    maps: xr.Dataset,
    path: str | os.PathLike[str],
    *,
    observations: Any = None,
    max_pixels: int = 1200,
    overwrite: bool = False,
    title: str | None = None,
) -> str:
    """Draw ``maps`` (from ``cube.miso.predict`` or ``xr.open_zarr``) to a PNG.

    Parameters
    ----------
    maps
        A Dataset with any of ``label`` (class codes, -1 nodata), ``probability``
        (``(<class dim>, y, x)``) and ``uncertainty`` (0-1).
    path
        The ``.png`` to write; its folder must exist. Written under a temporary name, then renamed.
    observations
        A table from :func:`miso_xr.read_observations` (``x``, ``y`` in the maps' CRS,
        ``label``): drawn on the label panel, coloured by their class.
    max_pixels
        Thin the maps to about this many pixels per side before drawing.
    overwrite
        Replace an existing file.
    title
        Figure title (default: the maps' task and model, when recorded).

    Returns
    -------
    str
        ``path``.

    Examples
    --------
    >>> maps = cube.miso.predict(model)                       # doctest: +SKIP
    >>> maps.miso.plot("permafrost.png", observations=obs)    # doctest: +SKIP
    'permafrost.png'
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.figure import Figure

    from ._files import check_finished

    if not isinstance(maps, xr.Dataset):
        raise InputError(f"maps is a {type(maps).__name__}; plot_maps draws an xr.Dataset")
    check_finished(maps)
    names = [v for v in ("label", "probability", "uncertainty") if v in maps.data_vars]
    if not names:
        raise InputError(
            f"maps have none of label, probability, uncertainty (they have "
            f"{', '.join(map(str, maps.data_vars)) or 'nothing'}); pass cube.miso.predict(model)"
        )
    out = Path(os.fspath(path))
    if out.suffix.lower() != ".png":
        raise InputError(f"figure path {str(out)!r} must end in .png")
    if not out.parent.is_dir():
        raise InputError(
            f"cannot write {str(out)!r}: its folder {str(out.parent)!r} does not exist"
        )
    if out.exists() and not overwrite:
        raise InputError(f"{str(out)!r} already exists; pass overwrite=True to replace it")
    step = max(1, int(np.ceil(max(maps.sizes["y"], maps.sizes["x"]) / max_pixels)))
    small = maps[names].isel(y=slice(None, None, step), x=slice(None, None, step)).compute()
    x, y = small["x"].values, small["y"].values
    res = abs(float(x[1] - x[0])) if x.size > 1 else 1.0
    extent = [x[0] - res / 2, x[-1] + res / 2, y[-1] - res / 2, y[0] + res / 2]
    classes: list[str] = []
    if "probability" in small:
        cdim = _class_dim(small["probability"])
        classes = [str(c) for c in small[cdim].values]
    elif "label" in small:
        flag = small["label"].attrs.get("flag_meanings", "")
        classes = str(flag).split() if flag else []

    panels = len(names)
    fig = Figure(figsize=(5.2 * panels, 5.0), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    for ax, name in zip(axes, names):
        if name == "label":
            lab = small["label"].values.astype("float64")
            lab[lab < 0] = np.nan
            k = max(len(classes), int(np.nanmax(lab)) + 1 if np.isfinite(lab).any() else 1)
            colours = _palette(k)
            cmap = ListedColormap(colours)
            im = ax.imshow(
                lab, extent=extent, cmap=cmap, norm=BoundaryNorm(np.arange(k + 1) - 0.5, k),
                interpolation="nearest",
            )  # fmt: skip
            cb = fig.colorbar(im, ax=ax, shrink=0.75, ticks=np.arange(k))
            cb.ax.set_yticklabels(classes[:k] if len(classes) >= k else [str(i) for i in range(k)])
            ax.set_title("label (most probable class)")
            if observations is not None and len(observations):
                _draw_points(ax, observations, classes, colours)
        elif name == "probability":
            prob = small["probability"]
            cdim = _class_dim(prob)
            if len(classes) == 2:
                img, what = prob.isel({cdim: 1}).values, f"P({classes[1]})"
            else:
                img, what = prob.max(cdim).values, "probability of the most probable class"
            im = ax.imshow(img, extent=extent, cmap="viridis", vmin=0, vmax=1)
            fig.colorbar(im, ax=ax, shrink=0.75)
            ax.set_title(what)
        else:
            im = ax.imshow(small["uncertainty"].values, extent=extent, cmap="magma", vmin=0, vmax=1)
            fig.colorbar(im, ax=ax, shrink=0.75)
            ax.set_title("uncertainty (0 sure - 1 unsure)")
        ax.set_xlabel("x (m)")
        ax.tick_params(labelsize=7)
        ax.ticklabel_format(useOffset=False, style="plain")
    axes[0].set_ylabel("y (m)")
    crs = maps.rio.crs if hasattr(maps, "rio") else None
    head = title or " ".join(
        p
        for p in (
            str(maps.attrs.get("task", "")),
            f"map, {maps.sizes['y']} x {maps.sizes['x']} px"
            + (f" (drawn every {step} px)" if step > 1 else ""),
            f"[{crs}]" if crs else "",
        )
        if p
    )
    fig.suptitle(head, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    tmp = out.with_name(f".{out.name}.part.png")
    try:
        # bbox "tight" keeps the points' legend below the label panel inside the image
        fig.savefig(tmp, format="png", bbox_inches="tight")
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return str(out)


def _palette(k: int) -> list:
    from matplotlib import colormaps

    if k == 2:  # absent / present: a cool and a warm colour that read in grey too
        return ["#8ecae6", "#b5179e"]
    base = colormaps["tab10" if k <= 10 else "tab20"]
    return [base(i) for i in range(k)]


def _draw_points(ax: Any, obs: Any, classes: list[str], colours: list) -> None:
    import pandas as pd

    label = obs["label"] if "label" in obs.columns else None
    if label is not None and isinstance(label.dtype, pd.CategoricalDtype):
        codes = label.cat.codes.to_numpy()
        for i, c in enumerate(label.cat.categories):
            m = codes == i
            if m.any():
                j = classes.index(str(c)) if str(c) in classes else i
                ax.scatter(
                    obs["x"][m], obs["y"][m], s=20, color=colours[j % len(colours)],
                    edgecolors="black", linewidths=0.6, label=f"observed {c}",
                )  # fmt: skip
        if (codes < 0).any():
            ax.scatter(obs["x"][codes < 0], obs["y"][codes < 0], s=8, c="white",
                       edgecolors="black", linewidths=0.4, label="unlabelled")  # fmt: skip
    else:
        ax.scatter(obs["x"], obs["y"], s=10, c="white", edgecolors="black", label="observations")
    # below the panel: over the map it would hide pixels, above it the title
    ax.legend(loc="upper left", bbox_to_anchor=(0, -0.12), fontsize=8, frameon=False, ncol=3)
