"""The validation report of :func:`miso_xr.read_observations`: what was wrong, row by row."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

__all__ = ["REASONS", "ObservationReport"]

# every reason a row can be flagged, in the order rows are checked (a row gets its first reason)
REASONS = {
    "missing_coordinates": "no coordinates (empty or NaN)",
    "null_island": "at 0/0 (a missing coordinate written as zero)",
    "out_of_range": "longitude outside [-180, 180] or latitude outside [-90, 90]",
    "lost_minus_sign": "positive longitude whose negation falls in the study region (lost '-')",
    "unknown_label": "label not in the task's classes",
    "outside_cube": "outside the cube's footprint",
    "no_data": "the cube has no values there (every band of a modality is NaN)",
    "duplicate": "same location as a kept row, with its label or none (merged into it)",
    "conflicting_duplicate": "same location as another row with a different label",
    "unlabelled": "no label (kept with label NaN: usable for self-supervision only)",
}


@dataclass
class ObservationReport:
    """What :func:`read_observations` found wrong, printable.

    Attributes
    ----------
    source
        What was read (a path or ``"DataFrame"``).
    task, classes
        The task and its class names.
    n_input, n_kept, n_labelled
        Rows read, rows in the table, rows with a label.
    counts
        Reason -> number of rows flagged for it (see :data:`REASONS`).
    actions
        Reason -> ``"dropped"``, ``"fixed"``, ``"merged"`` (a duplicate of a kept row) or
        ``"kept"``.
    examples
        Reason -> up to 3 example rows (``row`` is the source's row index).
    unknown_labels
        Label value -> number of rows, for labels outside the classes.
    class_counts
        Class -> number of rows kept.
    rows
        Every flagged row, one line per reason (a repaired row merged later has two): index =
        the source's row index (``row``), columns ``reason`` and ``action``; ``report.rows[report.rows.action == "dropped"].index`` lists the rows
        dropped, ``report.rows.to_csv("dropped.csv")`` writes them for the field team.
    hints
        Likely causes of coordinate problems (swapped columns, a missing or wrong ``crs=``).
    notes
        Decisions taken for the user (e.g. a label set of their own, its classes sorted).
    """

    source: str
    task: str
    classes: tuple[str, ...]
    n_input: int = 0
    n_kept: int = 0
    n_labelled: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    actions: dict[str, str] = field(default_factory=dict)
    examples: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    unknown_labels: dict[str, int] = field(default_factory=dict)
    class_counts: dict[str, int] = field(default_factory=dict)
    rows: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(
            {"reason": pd.Series(dtype=object), "action": pd.Series(dtype=object)}
        )
    )
    hints: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def n_dropped(self) -> int:
        return sum(n for r, n in self.counts.items() if self.actions.get(r) == "dropped")

    def to_frame(self) -> pd.DataFrame:
        """One row per reason: count, action and meaning."""
        return pd.DataFrame(
            [
                {"reason": r, "count": n, "action": self.actions.get(r, ""), "meaning": REASONS[r]}
                for r, n in self.counts.items()
            ],
            columns=["reason", "count", "action", "meaning"],
        )

    def __str__(self) -> str:
        lines = [
            f"observations from {self.source} (task {self.task!r}, classes {list(self.classes)}):",
            f"  {self.n_input} rows read, {self.n_kept} kept ({self.n_labelled} labelled), "
            f"{self.n_dropped} dropped"
            + (f", {self.counts['duplicate']} merged" if "duplicate" in self.counts else ""),
        ]
        for reason, n in self.counts.items():
            lines.append(f"  {n:>6} {self.actions.get(reason, '')} - {reason}: {REASONS[reason]}")
            if reason == "unknown_label" and self.unknown_labels:
                top = sorted(self.unknown_labels.items(), key=lambda kv: -kv[1])
                shown = ", ".join(f"{k!r} ({v})" for k, v in top[:8])
                more = f" and {len(top) - 8} more" if len(top) > 8 else ""
                lines.append(f"           unknown: {shown}{more}")
            for ex in self.examples.get(reason, [])[:3]:
                lines.append(
                    "           e.g. " + ", ".join(f"{k}={_fmt(v)}" for k, v in ex.items())
                )
        lines.extend(f"  note: {note}" for note in self.notes)
        if self.class_counts:
            lines.append(
                "  classes kept: " + ", ".join(f"{k} {v}" for k, v in self.class_counts.items())
            )
        for hint in self.hints:
            lines.append(f"  hint: {hint}")
        if len(self.rows):
            lines.append(
                f"  every flagged row: report.rows ({len(self.rows)} rows; "
                "report.rows.to_csv('flagged.csv') writes them)"
            )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"<ObservationReport {self.source}: {self.n_input} read, {self.n_kept} kept, "
            f"{self.n_dropped} dropped {dict(self.counts)}>"
        )


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return repr(v) if isinstance(v, str) else str(v)
