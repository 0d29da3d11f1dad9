"""Real servers on loopback for the demo, tests and benchmarks: each a subprocess stopped by PID.

``range_server(root)`` serves files with byte ranges (COGs for GDAL, checkpoints for the hub);
``stac_api(hrefs)`` serves collections and items as a STAC API with ``rustac serve``.

>>> with range_server("scene") as files, stac_api(["scene/stac/items.ndjson"]) as api:  # doctest: +SKIP
...     cube = miso_xr.open_stac(bbox=..., catalog=api.url, ...)
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

__all__ = ["Server", "free_port", "range_server", "stac_api"]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _detach_and_die_with_parent() -> None:  # pragma: no cover - runs in the child
    """In the child before exec: own process group, and SIGTERM when the parent dies (Linux).

    A test run killed by a timeout then leaves no server behind.
    """
    os.setsid()
    if sys.platform.startswith("linux"):
        import ctypes

        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        except OSError:
            pass


class Server:
    """A subprocess serving on ``url``; ``stop()`` (or leaving a ``with``) kills it by PID."""

    def __init__(self, args: Sequence[str], url: str, ready_path: str = "/", timeout: float = 20.0):
        self.url = url
        self.args = list(args)
        self.proc = subprocess.Popen(
            self.args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_detach_and_die_with_parent,  # noqa: PLW1509 - no threads race this here
        )
        deadline = time.monotonic() + timeout
        while True:  # bounded by the deadline
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise RuntimeError(
                    f"server {args[0]} exited with {self.proc.returncode}: {err[-2000:]}"
                )
            try:
                with urllib.request.urlopen(url.rstrip("/") + ready_path, timeout=1):
                    break
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"server {args[0]} did not answer on {url} in {timeout} s"
                    ) from None
                time.sleep(0.05)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        """Stop the server's process group (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self.proc.stderr:
            self.proc.stderr.close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def range_server(
    root: str | os.PathLike[str],
    *,
    faults: bool = False,
    log: str | os.PathLike[str] | None = None,
) -> Server:
    """Serve ``root`` over HTTP on loopback with byte ranges (GDAL /vsicurl/ reads COGs from it).

    ``log``: a file to which each request appends ``METHOD PATH`` (what a reader fetched).
    """
    port = free_port()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / ".ready").write_text("ok")
    args = [sys.executable, "-m", "miso_xr.datasets.range_server", str(root), str(port)]
    args += ["--faults"] if faults else []
    args += ["--log", str(Path(log).resolve())] if log is not None else []
    return Server(args, f"http://127.0.0.1:{port}", "/.ready")


def rustac_binary() -> str:
    exe = shutil.which("rustac") or str(Path(sys.executable).with_name("rustac"))
    if not Path(exe).exists():
        raise RuntimeError(
            "the 'rustac' command is missing; it serves the loopback STAC API: pip install rustac"
        )
    return exe


def stac_api(hrefs: Sequence[str | os.PathLike[str]]) -> Server:
    """Serve collections and items (JSON / NDJSON files) as a STAC API with ``rustac serve``."""
    port = free_port()
    addr = f"127.0.0.1:{port}"
    return Server(
        [rustac_binary(), "serve", "--addr", addr, *map(str, hrefs)],
        f"http://{addr}",
        ready_path="/collections",
    )
