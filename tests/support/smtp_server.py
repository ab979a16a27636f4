"""A real local SMTP server (plain TCP, threaded) that refuses every login.

It advertises ``AUTH PLAIN LOGIN`` and answers the whole exchange as a mail
server would - ``535`` after AUTH PLAIN's initial response, and after AUTH
LOGIN's base64 user name and password - so a client such as smtplib (behind
Django's SMTP backend) sends its credentials in base64 on the wire, fails, and
raises ``SMTPAuthenticationError``. Every line received is kept, so a test can
show the encoded credentials really were sent.
"""

from __future__ import annotations

import socketserver
import threading

from devstack.ports import free_port


class RefusingSMTPServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.received: list[str] = []
        self._lock = threading.Lock()
        self._server: socketserver.ThreadingTCPServer | None = None

    def start(self) -> RefusingSMTPServer:
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def send(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")
                self.wfile.flush()

            def read(self) -> str | None:
                raw = self.rfile.readline(4096)
                if not raw:
                    return None
                line = raw.decode("ascii", "replace").rstrip("\r\n")
                with owner._lock:
                    owner.received.append(line)
                return line

            def handle(self) -> None:
                self.send("220 localhost ESMTP refusing-test-server")
                while (line := self.read()) is not None:
                    verb = line.split(" ", 1)[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.send("250-localhost")
                        self.send("250 AUTH PLAIN LOGIN")
                    elif verb == "AUTH":
                        parts = line.split()
                        mechanism = parts[1].upper() if len(parts) > 1 else ""
                        if mechanism == "PLAIN" and len(parts) < 3:
                            self.send("334 ")
                            if self.read() is None:
                                return
                        elif mechanism == "LOGIN":
                            if len(parts) < 3:
                                self.send("334 VXNlcm5hbWU6")  # "Username:"
                                if self.read() is None:
                                    return
                            self.send("334 UGFzc3dvcmQ6")  # "Password:"
                            if self.read() is None:
                                return
                        self.send("535 5.7.8 Authentication credentials invalid")
                    elif verb == "QUIT":
                        self.send("221 bye")
                        return
                    elif verb in ("RSET", "NOOP"):
                        self.send("250 OK")
                    else:
                        self.send("530 5.7.0 Authentication required")

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> RefusingSMTPServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
