"""stackstac's reader, signing each href when it opens the file (imported only when used)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stackstac.rio_reader import AutoParallelRioReader


class SigningReader(AutoParallelRioReader):
    """An ``AutoParallelRioReader`` whose url is signed by ``patch_url`` when the file is opened.

    stackstac builds readers in one task and reads through them in later ones, possibly much
    later: the href is kept unsigned and signed in ``_open``, on the worker, right before GDAL
    opens the file, so a token is never older than the read that uses it.
    """

    def __init__(self, *, url: str, patch_url: Callable[[str], str], **kwargs: Any) -> None:
        super().__init__(url=url, **kwargs)
        self.href = url
        self.patch_url = patch_url

    def _open(self) -> Any:
        self.url = self.patch_url(self.href)
        return super()._open()
