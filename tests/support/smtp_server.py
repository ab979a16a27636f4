"""A small real SMTP server on 127.0.0.1 for tests (RFC 5321 subset, no TLS).

It speaks enough SMTP for smtplib and Django's SMTP backend: EHLO/HELO, MAIL,
RCPT, DATA, RSET, NOOP, QUIT, and keeps every message it accepts. With
`refuse_auth=True` it advertises ``AUTH PLAIN LOGIN`` and answers the whole
exchange as a mail server would, then ``535``: smtplib sends the credentials in
base64 on the wire, fails and raises ``SMTPAuthenticationError``. Every line
received is kept (`received`), so a test can show the credentials were sent.
"""

from __future__ import annotations

import socketserver
import threading
from dataclasses import dataclass

from devstack.background_server import BackgroundServer
from devstack.ports import free_port


@dataclass
class Message:
    sender: str
    recipients: list[str]
    data: bytes


class SMTPServer(BackgroundServer):
    def __init__(self, port: int | None = None, *, refuse_auth: bool = False):
        self.port = port or free_port()
        self.refuse_auth = refuse_auth
        self.received: list[str] = []
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

            def read(self) -> str | None:
                raw = self.rfile.readline(65536)
                if not raw:
                    return None
                line = raw.decode(errors="replace").rstrip("\r\n")
                with owner._lock:
                    owner.received.append(line)
                return line

            def refuse_login(self, line: str) -> bool:
                """AUTH PLAIN / LOGIN answered to the end, then 535. False: hung up."""
                parts = line.split()
                mechanism = parts[1].upper() if len(parts) > 1 else ""
                if mechanism == "PLAIN" and len(parts) < 3:
                    self.reply("334 ")
                    if self.read() is None:
                        return False
                elif mechanism == "LOGIN":
                    if len(parts) < 3:
                        self.reply("334 VXNlcm5hbWU6")  # "Username:"
                        if self.read() is None:
                            return False
                    self.reply("334 UGFzc3dvcmQ6")  # "Password:"
                    if self.read() is None:
                        return False
                self.reply("535 5.7.8 Authentication credentials invalid")
                return True

            def handle(self) -> None:
                with owner._lock:
                    owner.sessions += 1
                self.reply("220 localhost koolclips test SMTP")
                sender, recipients = "", []
                while True:
                    line = self.read()
                    if line is None:
                        return
                    verb = line.split(" ", 1)[0].upper()
                    if verb == "EHLO":
                        auth = b"250-AUTH PLAIN LOGIN\r\n" if owner.refuse_auth else b""
                        self.wfile.write(
                            b"250-localhost\r\n" + auth + b"250-8BITMIME\r\n250 SMTPUTF8\r\n"
                        )
                        self.wfile.flush()
                    elif verb == "AUTH" and owner.refuse_auth:
                        if not self.refuse_login(line):
                            return
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
        return self._serve(socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler))
