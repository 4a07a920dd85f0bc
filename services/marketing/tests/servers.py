"""Real local servers the marketing tests deliver to: SMTP (aiosmtpd) and an HTTP webhook."""

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

from shared.embedded_broker import free_port


class Mailbox:
    """A real SMTP server (aiosmtpd) that keeps what arrives."""

    def __init__(self) -> None:
        self.messages: list[Any] = []
        self.refuse: set[str] = set()
        self.port = 0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.refuse:
            return f"550 5.1.1 <{address}>: mailbox unavailable"  # as servers quote it
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


class Webhook:
    """A local HTTP receiver playing the SMS/Telegram/WhatsApp/push provider."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.answers: list[int] = []  # status codes to answer first, then 202
        self.refusal = b""  # the body of a 4xx/5xx answer (a provider's error text)
        self.lock = threading.Lock()
        webhook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with webhook.lock:
                    status = webhook.answers.pop(0) if webhook.answers else 202
                    webhook.received.append({"status": status, "body": body})
                body = webhook.refusal if status >= 400 else b""
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/send"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def accepted(self) -> list[dict[str, Any]]:
        return [r["body"] for r in self.received if r["status"] < 300]


@contextlib.contextmanager
def smtp_server() -> Iterator[Mailbox]:
    """A real SMTP server on a free local port (``mailbox.port``)."""
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    try:
        yield box
    finally:
        controller.stop()


@contextlib.contextmanager
def webhook_server() -> Iterator[Webhook]:
    hook = Webhook()
    hook.thread.start()
    try:
        yield hook
    finally:
        hook.server.shutdown()
        hook.server.server_close()
