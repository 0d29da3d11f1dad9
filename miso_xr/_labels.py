"""Labels -> classes for :func:`miso_xr.read_observations`: spellings, built-in tasks, typos."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .exceptions import ObservationError
from .spec import PERMAFROST_CLASSES, SOIL_ORDERS, TASK_CLASSES

_PERMAFROST_VALUES = {
    "0": "absent",
    "1": "present",
    "no": "absent",
    "yes": "present",
    "n": "absent",
    "y": "present",
    "false": "absent",
    "true": "present",
    "f": "absent",
    "t": "present",
    "absent": "absent",
    "present": "present",
}


def _norm(v: Any) -> str | None:
    """A raw label as a normalised string (None when missing)."""
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA or v is pd.NaT:
        return None
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        v = int(v)
    s = re.sub(r"\s+", " ", str(v)).strip().lower()
    return s or None


def _soil_key(s: str) -> str:
    return s[:-1] if s.endswith("s") else s


def _label_mapper(
    task: str, classes: Sequence[str] | Mapping[Any, Any] | Callable[[Any], Any] | None, raw: Any
) -> tuple[tuple[str, ...], Callable[[str], str | None]]:
    """(classes in model order, normalised raw label -> class name or None when unknown)."""
    if callable(classes) and not isinstance(classes, (Mapping, Sequence)):
        fn = classes
        values = [fn(v) for v in pd.unique(raw.dropna())]
        cats = tuple(sorted({str(v) for v in values if v is not None and v == v}))
        if not cats:
            raise ObservationError(
                "classes= (a function) mapped every label to None; it must return class names"
            )
        return cats, None  # type: ignore[return-value]  # handled by the caller (raw values)
    if isinstance(classes, Mapping):
        cats = tuple(dict.fromkeys(str(v) for v in classes.values() if v is not None))
        table = {_norm(k): (None if v is None else str(v)) for k, v in classes.items()}
        table.update({_norm(c): c for c in cats})
        return cats, table.get
    if classes is not None:
        if isinstance(classes, str):
            raise ObservationError(
                f"classes={classes!r} is one string; pass a list of class names or a mapping "
                "{raw label: class name}"
            )
        cats = tuple(str(c) for c in classes)
        if len(set(cats)) != len(cats) or len(cats) < 2:
            raise ObservationError(f"classes={list(cats)}: need at least two distinct class names")
        table = {_norm(c): c for c in cats}
        return cats, table.get
    if task == "permafrost":
        return PERMAFROST_CLASSES, _PERMAFROST_VALUES.get
    if task == "soil_order":
        table = {_soil_key(o.lower()): o for o in SOIL_ORDERS}
        return SOIL_ORDERS, lambda s: table.get(_soil_key(s))
    # a user task without classes: its classes are the labels found, sorted
    cats = tuple(sorted({s for s in map(_norm, raw) if s is not None}))
    if len(cats) < 2:
        raise ObservationError(
            f"task {task!r}: the labels hold {len(cats)} distinct value(s) {list(cats)}; "
            "pass classes=[...] with at least two class names"
        )
    return cats, {c: c for c in cats}.get


def _infer_task(label_col: Any, raw: pd.Series) -> str:
    name = str(label_col).strip().lower()
    if name == "permafrost":
        return "permafrost"
    if name in ("soil_order", "order", "taxorder", "soil order"):
        return "soil_order"
    values = {s for s in map(_norm, raw) if s is not None}
    if values and all(v in _PERMAFROST_VALUES for v in values):
        return "permafrost"
    soil = {_soil_key(o.lower()) for o in SOIL_ORDERS}
    if values and all(_soil_key(v) in soil for v in values):
        return "soil_order"
    if values and not any(_is_number(v) for v in values):
        # words of the user's own (tundra, forest...): a label set named after the column; its
        # classes are the values found, sorted, and the report says so
        return str(label_col)
    raise ObservationError(
        f"cannot tell the task of label column {str(label_col)!r} (values like "
        f"{sorted(values)[:5]}); pass task='permafrost', task='soil_order', or classes=[...] "
        "for a label set of your own"
    )


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _check_task_name(task: str, label_col: Any, raw: pd.Series) -> None:
    """Refuse a task name one typo away from a built-in one (``permafrst``): it would silently
    become a task of its own whose classes are the raw labels (``'0'``, ``'1'``)."""
    import difflib

    if task in TASK_CLASSES:
        return
    close = difflib.get_close_matches(task.lower(), list(TASK_CLASSES), n=1, cutoff=0.75)
    if close:
        found = sorted({s for s in map(_norm, raw) if s is not None})
        raise ObservationError(
            f"task {task!r} is not a known task; did you mean {close[0]!r}? (known: "
            f"{', '.join(TASK_CLASSES)}). The labels found in column {str(label_col)!r} are "
            f"{found[:10]}{' ...' if len(found) > 10 else ''}; for a task of your own with "
            "these labels, pass classes=[...] as well"
        )
