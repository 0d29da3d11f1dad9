"""The documentation holds together without building it: every page and notebook the site's nav
names exists, every API-reference entry names a real object, the class dimension is `category`
everywhere a user reads code, and the README's set-up is the two make commands."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _nav_targets() -> list[str]:
    text = (ROOT / "mkdocs.yml").read_text()
    nav = text[text.index("\nnav:") : text.index("\nplugins:")]
    return re.findall(r":\s+(\S+\.(?:md|ipynb))\s*$", nav, flags=re.M)


def test_every_page_of_the_nav_exists():
    targets = _nav_targets()
    assert "index.md" in targets and "api.md" in targets
    for target in targets:
        if target.startswith("gallery/"):  # executed copies of docs/notebooks (docs/gallery.py)
            assert (DOCS / "notebooks" / Path(target).name).is_file(), target
        else:
            assert (DOCS / target).is_file(), target
    notebooks = sorted(p.name for p in (DOCS / "notebooks").glob("*.ipynb"))
    assert sorted(Path(t).name for t in targets if t.startswith("gallery/")) == notebooks


def test_every_api_reference_entry_is_a_real_object():
    names = re.findall(r"^::: (\S+)", (DOCS / "api.md").read_text(), flags=re.M)
    assert len(names) > 10
    for name in names:
        module, _, attr = name.rpartition(".")
        try:
            obj = importlib.import_module(name)
        except ModuleNotFoundError:
            obj = getattr(importlib.import_module(module), attr)
        assert obj.__doc__, f"{name} has no docstring for the API reference"


def _user_code() -> dict[str, str]:
    texts = {str(p.relative_to(ROOT)): p.read_text() for p in DOCS.glob("*.md")}
    texts["README.md"] = (ROOT / "README.md").read_text()
    for p in (ROOT / "examples").glob("*.py"):
        texts[str(p.relative_to(ROOT))] = p.read_text()
    for p in (DOCS / "notebooks").glob("*.ipynb"):
        cells = json.loads(p.read_text())["cells"]
        texts[str(p.relative_to(ROOT))] = "\n".join("".join(c["source"]) for c in cells)
    return texts


def test_the_class_dimension_is_category_wherever_a_user_reads_code():
    # `class` is a Python keyword: sel(class=...) is a SyntaxError, {"class": ...} a workaround
    old = re.compile(r"""sel\(\s*\{\s*["']class["']|sel\(\s*class\s*=|\[\s*["']class["']\s*\]""")
    texts = _user_code()
    assert len([k for k in texts if k.endswith(".ipynb")]) >= 4
    found = {name: old.findall(text) for name, text in texts.items()}
    assert not {k: v for k, v in found.items() if v}
    shown = [k for k, t in texts.items() if 'sel(category="present")' in t]
    assert "README.md" in shown and any(k.endswith(".ipynb") for k in shown)


def test_the_readme_sets_up_with_make_demo_and_make_test():
    readme = (ROOT / "README.md").read_text()
    setup = readme[readme.index("## Set-up") :]
    block = setup[
        setup.index("```bash") + len("```bash") : setup.index("```", setup.index("```bash") + 7)
    ]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make demo", "make test"]
    assert "site/index.html" in readme  # the built site's entry page
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", readme):
        assert (ROOT / image).is_file(), image
