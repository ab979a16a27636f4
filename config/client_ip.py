"""The client's IP address, for login throttling (django-axes' AXES_CLIENT_IP_CALLABLE).

On Heroku every request reaches the dyno through Heroku's router: REMOTE_ADDR
is the router's own address (shared by every client), and the router appends
the address of whoever connected to it to X-Forwarded-For. Whatever the
client sent in that header comes first and is not to be believed; the entry
the router appended is the last one. With DJANGO_PROXY_HOPS proxies in front
of the app that each append (1: Heroku's router, the default on a dyno; 2: a
CDN in front of it), the client is the entry that many places from the right.

Off Heroku (`make run`, `heroku local`: 0 by default) nothing in front appends:
X-Forwarded-For is whatever the client made up, so REMOTE_ADDR is the client.
"""

from __future__ import annotations

import ipaddress

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str | None:
    hops = settings.PROXY_HOPS
    remote = request.META.get("REMOTE_ADDR") or None
    if hops <= 0:
        return remote
    forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    if len(forwarded) < hops:
        return remote
    candidate = forwarded[-hops]
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        return remote
