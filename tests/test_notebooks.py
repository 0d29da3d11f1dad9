"""The notebook gallery runs: each notebook of docs/notebooks executes without an error on small
settings (MISO_XR_QUICK=1), as `make docs` executes it for the site."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "docs" / "notebooks").glob("*.ipynb"))


def _gallery():
    spec = importlib.util.spec_from_file_location("miso_gallery", ROOT / "docs" / "gallery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_gallery_has_its_notebooks():
    names = [p.name for p in NOTEBOOKS]
    assert names == [
        "01_quickstart.ipynb",
        "02_cpcrw_real_data.ipynb",
        "03_distributed_cluster.ipynb",
        "04_pretraining_hub.ipynb",
    ]


def test_printed_progress_keeps_a_bars_last_state_as_a_terminal_would():
    import nbformat

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("x")
    stream = [("stderr", "\rfit:   0%| 0/2"), ("stderr", "\rfit: 100%| 2/2"), ("stderr", "\n")]
    stream += [("stdout", "score 0.8\n"), ("stderr", "\rget: 10%"), ("stderr", "\r       \r")]
    cell.outputs = [nbformat.v4.new_output("stream", name=n, text=t) for n, t in stream]
    nb.cells.append(cell)
    _gallery().tidy_streams(nb)
    assert [(o.name, o.text) for o in cell.outputs] == [
        ("stderr", "fit: 100%| 2/2\n"),
        ("stdout", "score 0.8\n"),
    ]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("src", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_executes(src, tmp_path):
    gallery = _gallery()
    why = gallery.missing_data(src)
    if why:  # real data beside the repository, absent from a user's fresh clone
        pytest.skip(f"{src.name} {why}")
    assert gallery.execute(src, tmp_path / src.name, quick=True) == "executed"
    import nbformat

    done = nbformat.read(tmp_path / src.name, as_version=4)
    outputs = [o for c in done.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no figure was drawn"
    if src.stem == "04_pretraining_hub":
        # progress=None in a Jupyter kernel: the bar is on (it is off in logs and CI's pytest)
        printed = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
        assert "pretrain MISO: 100%" in printed
