"""The house rules of docs/architecture.md, checked: no import cycles, rooms of a readable size,
model/ without xarray or Dask, cube/ without torch."""

from __future__ import annotations

import ast
from pathlib import Path

import miso_xr

PKG = Path(miso_xr.__file__).parent
MAX_LINES = 750  # "about 700" (docs/architecture.md)


def _modules() -> dict[str, tuple[Path, bool]]:
    mods = {}
    for f in PKG.rglob("*.py"):
        parts = ["miso_xr", *f.relative_to(PKG).with_suffix("").parts]
        is_pkg = parts[-1] == "__init__"
        mods[".".join(parts[:-1] if is_pkg else parts)] = (f, is_pkg)
    return mods


def _imports(mod: str, mods: dict[str, tuple[Path, bool]]) -> set[str]:
    """Every miso_xr module ``mod`` imports, at module level or inside functions."""
    f, is_pkg = mods[mod]
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    names: set[str] = set()
    for n in ast.walk(ast.parse(f.read_text())):
        if isinstance(n, ast.Import):
            names |= {a.name for a in n.names}
        elif isinstance(n, ast.ImportFrom):
            head = ".".join(base[: len(base) - n.level + 1]) if n.level else ""
            target = ".".join(p for p in (head, n.module or "") if p)
            names.add(target)
            names |= {f"{target}.{a.name}" for a in n.names}
    out = set()
    for name in names:
        while name and name not in mods:  # the module a dotted name lives in
            name = name.rpartition(".")[0]
        if name and name != mod and not mod.startswith(name + "."):  # a parent package is no edge
            out.add(name)
    return out


def test_no_import_cycles_between_modules():
    mods = _modules()
    graph = {m: _imports(m, mods) for m in mods}
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(path[path.index(t) :] + [t] if t in path else [m, t])
            elif t not in state:
                visit(t, [*path, t])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles[:5]


def test_no_module_is_over_about_700_lines():
    long = {
        str(f.relative_to(PKG)): n
        for f, _ in _modules().values()
        if (n := len(f.read_text().splitlines())) > MAX_LINES
    }
    assert not long, long


def test_lower_rooms_never_import_higher_ones():
    mods = _modules()
    for m in mods:
        imported = _imports(m, mods)
        if m.startswith("miso_xr.model"):
            bad = {t for t in imported if not t.startswith(("miso_xr.model", "miso_xr.spec"))}
            bad -= {"miso_xr.exceptions", "miso_xr.checkpoint", "miso_xr"}
            assert not bad, (m, bad)
            text = mods[m][0].read_text()
            assert "import xarray" not in text and "import dask" not in text, m
        if m.startswith("miso_xr.cube"):
            assert "import torch" not in mods[m][0].read_text(), m
