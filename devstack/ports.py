"""Ports for the local stack and the tests.

`free_port()` hands out a port no other process of ours holds: the suite runs
in several pytest-xdist workers at once, and a bare bind(("", 0)) probe races
between them (two workers can each be told the same port before either's
server binds it). So each port handed out is claimed with an flock on
/tmp/koolclips-ports/<port>, held for the life of the claiming process; the
kernel drops the lock when it exits, however it exits. Ports are picked below
the kernel's ephemeral range, so an outgoing connection's local port never
takes one between the claim and the server's bind.
"""

from __future__ import annotations

import fcntl
import os
import random
import socket
import tempfile
from pathlib import Path

CLAIM_DIR = Path(tempfile.gettempdir()) / "koolclips-ports"
_LOWEST = 10000
_claims: dict[int, int] = {}  # port -> the fd holding its flock


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int, host: str) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _claim(port: int) -> bool:
    CLAIM_DIR.mkdir(mode=0o777, exist_ok=True)
    fd = os.open(CLAIM_DIR / str(port), os.O_CREAT | os.O_RDWR, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return False
    os.set_inheritable(fd, False)
    _claims[port] = fd
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now and that no other process has
    been handed by this function while it lives (see the module docstring)."""
    high = _ephemeral_low() - 1
    if high - _LOWEST < 1000:  # an unusual ephemeral range: fall back to the kernel's pick
        low, high = 1024, 65535
    else:
        low = _LOWEST
    for _ in range(200):
        port = random.randint(low, high)
        if port in _claims or not _bindable(port, host):
            continue
        if _claim(port):
            if _bindable(port, host):  # not taken between the probe and the claim
                return port
            release_port(port)
    raise RuntimeError(f"no free port found in {low}-{high}")


def release_port(port: int) -> None:
    """Give a claimed port back before this process exits (optional)."""
    fd = _claims.pop(port, None)
    if fd is not None:
        os.close(fd)


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0
