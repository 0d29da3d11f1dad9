"""The range server with more faults, for the hub tests; run as a subprocess.

``python tests/hub_faults_server.py ROOT PORT LOG``

Besides what ``miso_xr.datasets.range_server --faults`` does (``/stall/...`` answers nothing for 60 s, ``/html/...``
answers 200 with an HTML page), paths under these prefixes serve the file named by the rest:

``/truncate/P``    announces the full Content-Length, sends half the bytes, closes the connection
``/slow/P``        sends 8 KiB every 50 ms (a download long enough to race or to interrupt)
``/status/N/P``    answers HTTP status N (500, 403, ...) with a short text body

Every GET is appended to LOG as one line ``GET /path`` so tests can count downloads.
"""

from __future__ import annotations

import os
import sys
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

from miso_xr.datasets.range_server import RangeHandler

LOG = ""


class FaultHandler(RangeHandler):
    def _file(self, prefix: str) -> str | None:
        path = self.translate_path("/" + self.path[len(prefix) :])
        if not os.path.isfile(path):
            self.send_error(404, "not found")
            return None
        return path

    def _fault(self) -> bool:
        if self.command == "GET" and LOG:
            with open(LOG, "a") as f:
                f.write(f"GET {self.path}\n")
        if self.path.startswith("/status/"):
            code = int(self.path.split("/")[2])
            body = f"error {code}".encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return True
        for prefix in ("/truncate/", "/slow/"):
            if self.path.startswith(prefix):
                path = self._file(prefix)
                if path is None:
                    return True
                data = Path(path).read_bytes()
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if prefix == "/truncate/":
                    self.wfile.write(data[: len(data) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return True
                for i in range(0, len(data), 8192):
                    self.wfile.write(data[i : i + 8192])
                    self.wfile.flush()
                    time.sleep(0.05)
                return True
        return super()._fault()


def main() -> None:
    global LOG
    root, port, LOG = sys.argv[1], int(sys.argv[2]), os.path.abspath(sys.argv[3])
    FaultHandler.faults = True
    os.chdir(root)
    server = ThreadingHTTPServer(("127.0.0.1", port), FaultHandler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
