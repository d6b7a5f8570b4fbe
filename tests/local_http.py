"""A throwaway HTTP server for tests: a slow image host, a PACS that answers badly."""
from __future__ import annotations

import http.server
import threading
from typing import Callable


def serve(get: Callable[[str], tuple[int, str, bytes]], delay_s: float = 0.0):
    """A server on 127.0.0.1 (a free port), in a daemon thread, whose every GET answers
    ``get(path)``: ``(status, content type, body)``, ``delay_s`` late. Returns ``(server, base
    URL)``; the test calls ``server.shutdown()`` and ``server.server_close()``."""
    import time

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            time.sleep(delay_s)
            status, content_type, body = get(self.path.split("?")[0])
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):  # quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"
