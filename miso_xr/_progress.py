"""When to show progress bars: on in a terminal or a notebook, off in logs and CI.

Every long-running function takes ``progress: bool | None = None``; ``None`` asks
:func:`show_progress`, which says yes when stderr is a terminal or the code runs in a Jupyter
kernel, and no otherwise (a log file, CI, a pipe). ``miso-xr --quiet`` (or :func:`set_quiet`)
turns the default off for the whole process; an explicit ``progress=True`` still wins.
"""

from __future__ import annotations

import sys

__all__ = ["set_quiet", "show_progress"]

_quiet = False


def set_quiet(quiet: bool = True) -> None:
    """Make ``progress=None`` mean no progress bars in this process (``miso-xr --quiet``)."""
    global _quiet
    _quiet = bool(quiet)


def _in_notebook() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    # a Jupyter kernel (ZMQ); a terminal IPython is covered by the TTY test
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def show_progress(progress: bool | None = None) -> bool:
    """``progress`` when given, else whether a person is watching (a TTY or a notebook).

    >>> show_progress(False), show_progress(True)
    (False, True)
    """
    if progress is not None:
        return bool(progress)
    if _quiet:
        return False
    if _in_notebook():
        return True
    stream = sys.stderr
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # a replaced or closed stream
        return False
