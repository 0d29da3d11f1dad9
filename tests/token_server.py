"""A loopback archive whose files need a short-lived token, and its token endpoint.

``python tests/token_server.py ROOT PORT TTL`` serves ROOT with byte ranges (as
miso_xr.datasets.range_server) but answers 403 unless the query holds ``sig=<issue time>`` younger
than TTL seconds, like an Azure SAS token that has expired. ``GET /api/sas/v1/token/<account>/
<container>`` issues one in the Planetary Computer's format (``{"msft:expiry", "token"}``), so
the planetary-computer SDK signs with it when ``PC_SDK_SAS_URL`` points here.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timedelta, timezone
from http.server import ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from miso_xr.datasets.range_server import RangeHandler

TOKEN_PATH = "/api/sas/v1/token/"


class TokenHandler(RangeHandler):
    ttl = 2.0
    issued = 0

    def _fault(self) -> bool:
        parts = urlsplit(self.path)
        if parts.path.startswith(TOKEN_PATH):
            now = time.time()
            expiry = datetime.now(timezone.utc) + timedelta(seconds=self.ttl)
            body = json.dumps(
                {"msft:expiry": expiry.isoformat().replace("+00:00", "Z"), "token": f"sig={now!r}"}
            ).encode()
            self._answer(200, body, "application/json")
            return True
        if parts.path == "/.ready":
            return False
        sig = parse_qs(parts.query).get("sig", [""])[0]
        try:
            fresh = time.time() - float(sig) < self.ttl
        except ValueError:
            fresh = False
        if not fresh:
            self._answer(403, b"AuthenticationFailed: token missing or expired", "text/plain")
            return True
        return False

    def _answer(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


def main() -> None:
    import functools

    root, port, ttl = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    TokenHandler.ttl = ttl
    handler = functools.partial(TokenHandler, directory=root)
    ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()


if __name__ == "__main__":
    main()
