"""Real servers on loopback for tests (see miso_xr.datasets.serving).

``range_server(root)`` serves files with byte ranges; ``range_server(root, faults=True)`` also
answers ``/stall/...`` with silence for 60 s and ``/html/...`` with a 200 HTML page (hub tests).
"""

from __future__ import annotations

from miso_xr.datasets.serving import Server, free_port, range_server, rustac_binary, stac_api

__all__ = ["Server", "free_port", "range_server", "rustac_binary", "stac_api"]
