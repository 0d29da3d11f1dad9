"""A scikit-learn forest as plain arrays, and back, with a check that the tree layout still fits.

scikit-learn has no public way to rebuild a fitted tree from arrays, and pickle is not an option
for files people exchange. So each tree is stored as its node arrays (one safetensors tensor per
field of ``sklearn.tree._tree.NODE_DTYPE``, plus the class values) and rebuilt through the
private ``Tree(n_features, n_classes, n_outputs)`` constructor and ``Tree.__setstate__``.

Private means it may change in any release (scikit-learn's categorical-split work changes the
node fields and the constructor). The checkpoint therefore records the layout it was written
with (:func:`installed_layout`: the scikit-learn version, the node fields with their dtypes in
order, the constructor's argument count, the keys of the tree state) and :func:`rebuild_trees`
compares it with the installed one before touching ``__setstate__``: a difference is one
:class:`~miso_xr.exceptions.CheckpointError` naming both versions and the fields that differ,
never a silently wrong forest. A different version with the same layout loads normally.

The versions this is tested with are the ``scikit-learn`` bounds in ``pyproject.toml``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..exceptions import CheckpointError

__all__ = ["LEGACY_FIELDS", "forest_tensors", "installed_layout", "rebuild_trees"]

# the fields written before checkpoints recorded their layout (scikit-learn 1.3 to 1.9)
LEGACY_FIELDS = (
    "left_child",
    "right_child",
    "feature",
    "threshold",
    "impurity",
    "n_node_samples",
    "weighted_n_node_samples",
    "missing_go_to_left",
)
_LEGACY_FORMATS = ("<i8", "<i8", "<i8", "<f8", "<f8", "<i8", "<f8", "|u1")


def _fields(dtype: np.dtype) -> list[str]:
    """``["name:<dtype str>", ...]`` of a structured dtype, in field order."""
    return [f"{name}:{dtype.fields[name][0].str}" for name in dtype.names]


def installed_layout() -> dict[str, Any]:
    """The tree layout of the installed scikit-learn (what a checkpoint records when written)."""
    import sklearn
    from sklearn.tree._tree import NODE_DTYPE, Tree

    layout: dict[str, Any] = {
        "version": sklearn.__version__,
        "node_fields": _fields(np.dtype(NODE_DTYPE)),
    }
    try:
        # an empty tree tells what pickling it needs: constructor arguments and state keys
        _, args, state = Tree(1, np.array([2], dtype=np.intp), 1).__reduce__()[:3]
        layout["tree_args"] = len(args)
        layout["tree_state"] = sorted(state)
    except (TypeError, ValueError) as err:  # the constructor no longer takes these arguments
        layout["tree_args"] = f"Tree(n_features, n_classes, n_outputs) fails: {err}"
        layout["tree_state"] = []
    return layout


def forest_tensors(forest: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays of every tree of a fitted ``RandomForestClassifier`` and the layout they follow.

    Keys: ``tree.NNNNN.<node field>`` and ``tree.NNNNN.value`` per tree, ``max_depth`` for all.
    """
    layout = installed_layout()
    tensors: dict[str, np.ndarray] = {}
    depths = []
    for i, est in enumerate(forest.estimators_):
        state = est.tree_.__getstate__()
        nodes = state["nodes"]
        for name in nodes.dtype.names:
            tensors[f"tree.{i:05d}.{name}"] = np.ascontiguousarray(nodes[name])
        tensors[f"tree.{i:05d}.value"] = np.ascontiguousarray(state["values"])
        depths.append(int(state["max_depth"]))
    tensors["max_depth"] = np.asarray(depths, dtype="int64")
    return tensors, layout


def _difference(recorded: dict[str, Any], installed: dict[str, Any]) -> list[str]:
    """What differs between two layouts, in words (empty when they match)."""
    out = []
    rec, ins = list(recorded.get("node_fields", [])), list(installed["node_fields"])
    if rec != ins:
        gone = [f for f in rec if f not in ins]
        new = [f for f in ins if f not in rec]
        words = []
        if gone:
            words.append(f"recorded but not installed: {', '.join(gone)}")
        if new:
            words.append(f"installed but not recorded: {', '.join(new)}")
        if not words:
            words.append(f"same fields in another order ({', '.join(rec)} vs {', '.join(ins)})")
        out.append("tree node fields differ (" + "; ".join(words) + ")")
    for key, what in (("tree_args", "Tree constructor arguments"), ("tree_state", "tree state")):
        if key in recorded and recorded[key] != installed[key]:
            out.append(f"{what} differ ({recorded[key]} recorded, {installed[key]} installed)")
    return out


def check_layout(recorded: dict[str, Any] | None) -> dict[str, Any]:
    """Raise :class:`CheckpointError` unless trees recorded with ``recorded`` can be rebuilt here.

    ``recorded`` is the checkpoint's ``config["sklearn"]``; ``None`` (a checkpoint from before
    the layout was recorded) stands for the legacy fields. Returns the installed layout.
    """
    installed = installed_layout()
    if recorded is None:
        recorded = {
            "version": "unknown (the checkpoint predates the recorded layout)",
            "node_fields": [f"{n}:{f}" for n, f in zip(LEGACY_FIELDS, _LEGACY_FORMATS)],
        }
    if not isinstance(recorded, dict) or not isinstance(recorded.get("node_fields"), list):
        raise CheckpointError(
            f"the random forest's recorded scikit-learn layout is malformed ({recorded!r}); "
            "expected a mapping with 'version' and a 'node_fields' list"
        )
    diff = _difference(recorded, installed)
    if diff:
        raise CheckpointError(
            f"this random forest was saved with scikit-learn {recorded.get('version')}, and the "
            f"installed scikit-learn {installed['version']} stores trees differently: "
            + "; ".join(diff)
            + ". Install the recorded version (pip install 'scikit-learn=="
            + f"{recorded.get('version')}') to load it, or fit and save the forest again"
        )
    return installed


def rebuild_trees(
    tensors: dict[str, np.ndarray],
    *,
    n_trees: int,
    n_features: int,
    n_classes: int,
    recorded: dict[str, Any] | None,
) -> list[Any]:
    """``sklearn.tree._tree.Tree`` objects from :func:`forest_tensors` arrays (layout checked)."""
    from sklearn.tree._tree import NODE_DTYPE, Tree

    check_layout(recorded)
    depths = tensors["max_depth"]
    if len(depths) != n_trees:
        raise CheckpointError(
            f"the random forest checkpoint has {len(depths)} tree depths for {n_trees} trees"
        )
    trees = []
    for i in range(n_trees):
        first = tensors[f"tree.{i:05d}.{NODE_DTYPE.names[0]}"]
        nodes = np.zeros(first.shape[0], dtype=NODE_DTYPE)
        for name in NODE_DTYPE.names:
            nodes[name] = tensors[f"tree.{i:05d}.{name}"]
        values = np.ascontiguousarray(tensors[f"tree.{i:05d}.value"], dtype="float64")
        tree = Tree(n_features, np.array([n_classes], dtype=np.intp), 1)
        tree.__setstate__(
            {
                "max_depth": int(depths[i]),
                "node_count": int(first.shape[0]),
                "nodes": nodes,
                "values": values,
            }
        )
        trees.append(tree)
    return trees
