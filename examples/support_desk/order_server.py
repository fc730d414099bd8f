"""A tiny order service on loopback, answering the API described in ``order_service.yaml``.

It stands in for the shop's real order service, so the generated ``order_service`` client has
something to talk to offline. It records every request it gets, so the demo can show that the
refused ``delete_customer`` call never reached it.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ORDERS: dict[str, dict[str, Any]] = {
    "A-1001": {
        "order_id": "A-1001",
        "status": "shipped",
        "currency": "EUR",
        "total": 149.90,
        "charges": [
            {"charge_id": "ch_01", "amount": 149.90, "captured_at": "2026-11-20T10:02:11Z"},
            {"charge_id": "ch_02", "amount": 149.90, "captured_at": "2026-11-20T10:02:13Z"},
        ],
    },
    "A-1002": {
        "order_id": "A-1002",
        "status": "delivered",
        "currency": "EUR",
        "total": 24.50,
        "charges": [{"charge_id": "ch_03", "amount": 24.50, "captured_at": "2026-11-21T08:40:00Z"}],
    },
}


class OrderService:
    """The order service, served by a thread on ``127.0.0.1`` at a free port.

    Use it as a context manager; :attr:`url` is its base URL and :attr:`requests` the
    ``"METHOD /path"`` lines it received.
    """

    def __init__(self) -> None:
        self.requests: list[str] = []
        service = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: Any = None) -> None:
                data = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                service.requests.append(f"GET {self.path}")
                prefix = "/orders/"
                order = (
                    ORDERS.get(self.path[len(prefix) :]) if self.path.startswith(prefix) else None
                )
                if order is None:
                    self._send(404, {"detail": f"no order at {self.path}"})
                else:
                    self._send(200, order)

            def do_DELETE(self) -> None:
                service.requests.append(f"DELETE {self.path}")
                self._send(204)

            def log_message(self, format: str, *args: Any) -> None:
                """Stay quiet: the demo prints its own report."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:41234``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> OrderService:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
