"""A small real SMTP server on 127.0.0.1 for tests (RFC 5321 subset, no TLS).

It speaks enough SMTP for smtplib and Django's SMTP backend: EHLO/HELO, MAIL,
RCPT, DATA, RSET, NOOP, QUIT, and keeps every message it accepts.
"""

from __future__ import annotations

import socketserver
import threading
from dataclasses import dataclass

from devstack.ports import free_port


@dataclass
class Message:
    sender: str
    recipients: list[str]
    data: bytes


class SMTPServer:
    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.messages: list[Message] = []
        self.sessions = 0
        self._lock = threading.Lock()
        self._server: socketserver.ThreadingTCPServer | None = None

    def start(self) -> SMTPServer:
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")
                self.wfile.flush()

            def handle(self) -> None:
                with owner._lock:
                    owner.sessions += 1
                self.reply("220 localhost koolclips test SMTP")
                sender, recipients = "", []
                while True:
                    raw = self.rfile.readline()
                    if not raw:
                        return
                    line = raw.decode(errors="replace").rstrip("\r\n")
                    verb = line.split(" ", 1)[0].upper()
                    if verb == "EHLO":
                        self.wfile.write(b"250-localhost\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n")
                        self.wfile.flush()
                    elif verb == "HELO":
                        self.reply("250 localhost")
                    elif verb == "MAIL":
                        sender, recipients = line.split(":", 1)[1].strip(), []
                        self.reply("250 OK")
                    elif verb == "RCPT":
                        recipients.append(line.split(":", 1)[1].strip())
                        self.reply("250 OK")
                    elif verb == "DATA":
                        self.reply("354 End data with <CR><LF>.<CR><LF>")
                        lines = []
                        while True:
                            data = self.rfile.readline()
                            if not data or data in (b".\r\n", b".\n"):
                                break
                            lines.append(data)
                        with owner._lock:
                            owner.messages.append(Message(sender, recipients, b"".join(lines)))
                        self.reply("250 OK queued")
                    elif verb in ("RSET", "NOOP"):
                        self.reply("250 OK")
                    elif verb == "QUIT":
                        self.reply("221 Bye")
                        return
                    else:
                        self.reply("502 Command not implemented")

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SMTPServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
