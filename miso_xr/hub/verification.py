"""Local verification of a checkpoint: hash, size, header and metadata against its index."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint import read_info, sha256_file
from ..exceptions import CheckpointError, HubError
from .cache import _blob
from .checks import _check_bytes, _refuse_pickle_name, _safetensors_header, _tensor_summary
from .index import Entry, resolve
from .settings import get_cache_dir
from .sources import _classify, fetch


@dataclass(frozen=True)
class VerifyReport:
    """What :func:`verify` found; ``ok`` when nothing is wrong."""

    source: str
    path: str
    sha256: str
    size: int
    expected_sha256: str | None = None
    expected_size: int | None = None
    kind: str = ""
    metadata: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        lines = [
            f"{'OK  ' if self.ok else 'BAD '} {self.source}",
            f"     file    {self.path}",
            f"     sha256  {self.sha256}"
            + (f" (expected {self.expected_sha256})" if self.expected_sha256 else ""),
            f"     size    {self.size}"
            + (f" (expected {self.expected_size})" if self.expected_size is not None else ""),
        ]
        if self.kind:
            lines.append(f"     kind    {self.kind}")
        lines += [f"     problem {p}" for p in self.problems]
        return "\n".join(lines)


def _inspect(path: Path) -> tuple[str, dict[str, Any], list[str]]:
    """(kind, metadata, problems) of a local file: header, then miso_xr metadata if any."""
    problems: list[str] = []
    try:
        _check_bytes(path, where=str(path))
    except HubError as err:
        return "", {}, [str(err)]
    try:
        info = read_info(path)
    except CheckpointError as err:
        if "not a miso_xr checkpoint" not in str(err):
            problems.append(str(err))
        header = _safetensors_header(path)
        return "backbone", _tensor_summary(header), problems
    return "model", info.summary(), problems


def verify(
    source: str | os.PathLike[str],
    *,
    offline: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    hub: str | os.PathLike[str] | Sequence[str] | None = None,
    timeout: float = 30,
) -> VerifyReport:
    """Check a checkpoint's hash, size, header and metadata; never raises for a bad file.

    ``source`` is a local path (checked as it is), a hub entry (its cached copy is checked
    against the index: sha256, size, metadata; fetched first when absent and online) or a URL
    (fetched, then checked).

    Examples
    --------
    >>> report = verify("perm.safetensors")                                  # doctest: +SKIP
    >>> report.ok, report.sha256[:8]                                         # doctest: +SKIP
    (True, '3b1f09aa')
    """
    kind, value = _classify(source)
    problems: list[str] = []
    entry: Entry | None = None
    if kind == "path":
        path = Path(value).expanduser()
        _refuse_pickle_name(str(path))
        if not path.is_file():
            raise CheckpointError(f"checkpoint {value!r} does not exist")
    elif kind == "name":
        cache = get_cache_dir(cache_dir)
        entry = resolve(value, hub=hub, offline=offline, cache_dir=cache, timeout=timeout)
        path = _blob(cache, entry.sha256)
        if not path.is_file():
            path = fetch(
                entry.ref, offline=offline, cache_dir=cache, hub=entry.index, timeout=timeout
            )
    else:
        path = fetch(value, offline=offline, cache_dir=cache_dir, timeout=timeout)
    digest = sha256_file(path)
    size = path.stat().st_size
    found_kind, metadata, problems = _inspect(path)
    if entry is not None:
        if digest != entry.sha256:
            problems.append(f"sha256 {digest} differs from the index's {entry.sha256}")
        if size != entry.size:
            problems.append(f"size {size} differs from the index's {entry.size}")
        if found_kind and found_kind != entry.kind:
            problems.append(f"the file holds a {found_kind}; the index says {entry.kind}")
        for k, v in entry.metadata.items():
            if found_kind == entry.kind and metadata.get(k) != v:
                problems.append(f"metadata {k!r} is {metadata.get(k)!r}; the index says {v!r}")
    return VerifyReport(
        source=os.fspath(source),
        path=str(path),
        sha256=digest,
        size=size,
        expected_sha256=entry.sha256 if entry else None,
        expected_size=entry.size if entry else None,
        kind=found_kind,
        metadata=metadata,
        problems=tuple(problems),
    )
