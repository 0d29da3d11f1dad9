"""Execute the notebook gallery: ``docs/notebooks/*.ipynb`` (no outputs) -> ``docs/gallery/``.

``make docs`` runs this before ``mkdocs build`` (the site shows the executed copies);
``tests/test_notebooks.py`` runs the same function on small settings (``MISO_XR_QUICK=1``) and
fails on any error. A notebook whose metadata names a folder of ``../shared/data``
(``{"miso_xr": {"needs": "..."}}``) is not executed when that folder is missing: its copy says so.

Run: ``python docs/gallery.py [--quick] [NAME ...]`` (``make docs GALLERY=--quick`` builds the site
on CI's small settings).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ROOT / "docs" / "notebooks"
GALLERY = ROOT / "docs" / "gallery"


def shared_data() -> Path:
    """``../shared/data`` beside the repository, or ``$MISO_XR_SHARED_DATA``."""
    return Path(os.environ.get("MISO_XR_SHARED_DATA", ROOT.parent / "shared" / "data")).resolve()


def missing_data(src: Path) -> str | None:
    """Why ``src`` cannot run here (the data folder it needs is missing), else None."""
    import nbformat

    needs = nbformat.read(src, as_version=4).metadata.get("miso_xr", {}).get("needs")
    if needs and not (shared_data() / needs).is_dir():
        return f"needs {shared_data() / needs} (the real data beside the repository), missing here"
    return None


def execute(src: Path, dst: Path, *, quick: bool = False, timeout: int | None = None) -> str:
    """Execute ``src`` into ``dst``; returns ``"executed"`` or ``"skipped: <why>"``.

    Cells run with the repository as working directory, ``MISO_XR_QUICK`` set for ``quick`` and
    ``MISO_XR_SHARED_DATA`` pointing at the real data; an error in any cell raises
    ``nbclient.exceptions.CellExecutionError`` naming the cell. ``timeout``: seconds a cell may
    take (default 600 on small settings, where a hang should fail CI, and 3600 on full ones).
    """
    if timeout is None:
        timeout = 600 if quick else 3600
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(src, as_version=4)
    dst.parent.mkdir(parents=True, exist_ok=True)
    why = missing_data(src)
    if why:
        note = nbformat.v4.new_markdown_cell(
            f'!!! note "Not executed"\n    This notebook {why}; its code is shown without outputs.'
        )
        nb.cells.insert(1, note)
        nbformat.write(nb, dst)
        return f"skipped: {why}"
    env = {"MISO_XR_QUICK": "1" if quick else "0", "MISO_XR_SHARED_DATA": str(shared_data())}
    # the gallery's models are small: one torch thread per kernel is faster and steadier than
    # several spinning against other jobs (CI, a shared machine; tests/conftest.py's
    # one_torch_thread says the same); set OMP_NUM_THREADS to give the kernel more
    env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the client's environment
    try:
        client = NotebookClient(
            nb,
            timeout=timeout,
            kernel_name="python3",
            resources={"metadata": {"path": str(ROOT)}},
        )
        client.execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    tidy_streams(nb)
    nbformat.write(nb, dst)
    figure = nb.metadata.get("miso_xr", {}).get("figure")
    if figure and not quick:  # the README and the site's entry page show it
        save_last_figure(nb, ROOT / "docs" / figure)
    return "executed"


def tidy_streams(nb) -> None:
    """Printed text as a terminal leaves it: the kernel sends each redraw of a progress bar
    (``\\r``) as its own output, which a static page would print one under another; only a
    bar's last state stays (a bar that cleared itself goes). tqdm's note that the kernel lacks
    ipywidgets (so its bars are text) is left out."""
    for cell in nb.cells:
        merged: list = []
        for out in cell.get("outputs", []):
            prev = merged[-1] if merged else None
            if (
                out.get("output_type") == "stream"
                and prev is not None
                and prev.get("output_type") == "stream"
                and prev["name"] == out["name"]
            ):
                prev["text"] += out["text"]
            else:
                merged.append(out)
        for out in merged:
            if out.get("output_type") != "stream":
                continue
            lines = []
            for line in out["text"].split("\n"):
                last = line.split("\r")[-1]
                if ("\r" in line and not last.strip()) or "IProgress not found" in last:
                    continue
                if "from .autonotebook import" in last:
                    continue
                lines.append(last)
            out["text"] = "\n".join(lines)
        if "outputs" in cell:
            cell["outputs"] = [
                o for o in merged if o.get("output_type") != "stream" or o["text"].strip()
            ]


def save_last_figure(nb, path: Path) -> None:
    """Write the notebook's last PNG output to ``path``."""
    import base64

    pngs = [
        o["data"]["image/png"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if "image/png" in o.get("data", {})
    ]
    if pngs:
        import io

        from PIL import Image

        path.parent.mkdir(parents=True, exist_ok=True)
        # 256 colours: the README's copy stays a few hundred kB (maps are noisy for PNG)
        image = Image.open(io.BytesIO(base64.b64decode(pngs[-1]))).convert("RGB")
        image.quantize(colors=256).save(path, optimize=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("names", nargs="*", help="notebook names (default: all)")
    p.add_argument("--quick", action="store_true", help="small settings (as CI runs them)")
    args = p.parse_args(argv)
    sources = sorted(SOURCES.glob("*.ipynb"))
    if args.names:
        sources = [s for s in sources if any(n in s.name for n in args.names)]
    for src in sources:
        t0 = time.perf_counter()
        how = execute(src, GALLERY / src.name, quick=args.quick)
        print(f"{src.name}: {how} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
