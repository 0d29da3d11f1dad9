"""A static HTTP server with byte ranges (GDAL's /vsicurl/ needs them), run as a subprocess.

``python -m miso_xr.datasets.range_server ROOT PORT [--faults] [--log FILE]``

It serves ROOT on 127.0.0.1 only, with HEAD, GET and single ``Range: bytes=a-b`` requests.
``python -m http.server`` ignores Range, so GDAL cannot read COGs from it; and a server in a thread
of the process that runs GDAL deadlocks, hence a subprocess.

With ``--faults`` (the hub's tests), a path under ``/stall/`` answers nothing for 60 s (a stalled
server) and one under ``/html/`` answers 200 with an HTML error page instead of the file.
With ``--log FILE`` each request appends a line ``METHOD PATH`` to FILE (tests count what a lazy
reader fetched, and when).
"""

from __future__ import annotations

import os
import re
import sys
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class RangeHandler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002 - signature of the base class
        pass

    faults = False
    log: str | None = None

    def _log(self) -> None:
        if self.log:
            with open(self.log, "a") as f:
                f.write(f"{self.command} {self.path}\n")

    def _fault(self) -> bool:
        if not self.faults:
            return False
        if self.path.startswith("/stall/"):
            time.sleep(60)
            return True
        if self.path.startswith("/html/"):
            body = b"<!DOCTYPE html><html><body><h1>Sign in to continue</h1></body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            return True
        return False

    def _serve(self, head: bool) -> None:
        self._log()
        if self._fault():
            return
        path = self.translate_path(self.path)
        if not os.path.isfile(path):
            self.send_error(404, "not found")
            return
        size = os.path.getsize(path)
        start, end = 0, size - 1
        status = 200
        m = _RANGE.match(self.headers.get("Range", "").strip())
        if m and (m.group(1) or m.group(2)):
            if m.group(1):
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else size - 1
            else:  # suffix range: the last N bytes
                start = max(0, size - int(m.group(2)))
            end = min(end, size - 1)
            if start > end or start >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if head:
            return
        with open(path, "rb") as f:
            f.seek(start)
            remaining = length
            while remaining > 0:
                block = f.read(min(1 << 16, remaining))
                if not block:
                    break
                self.wfile.write(block)
                remaining -= len(block)

    def do_GET(self):  # noqa: N802 - http.server naming
        self._serve(head=False)

    def do_HEAD(self):  # noqa: N802
        self._serve(head=True)


def main() -> None:
    root, port = sys.argv[1], int(sys.argv[2])
    RangeHandler.faults = "--faults" in sys.argv[3:]
    if "--log" in sys.argv[3:]:
        RangeHandler.log = os.path.abspath(sys.argv[sys.argv.index("--log") + 1])
    os.chdir(root)
    server = ThreadingHTTPServer(("127.0.0.1", port), RangeHandler)
    server.daemon_threads = True
    print(f"serving {root} on 127.0.0.1:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
