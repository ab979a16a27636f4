"""Django's debug pages (DJANGO_DEBUG=1) without the credentials inside URLs.

Django's filter hides settings whose *names* say KEY, PASS, SECRET, TOKEN...,
but REDIS_URL, CELERY_BROKER_URL and CELERY_REDBEAT_REDIS_URL hold the Redis
password inside the URL, and a debug page shows the settings to whoever
triggers one (a request with a foreign Host header was enough). Here:

- every string in the settings, in request.META (runserver copies the whole
  environment into it) and in the traceback's frame variables has the user-info
  of any URL in it (``redis://:password@host`` -> ``redis://********@host``)
  replaced;
- frame variables are also hidden by name, as settings are (a local called
  ``password`` in redis-py's connection code);
- the finished page (HTML and text) goes through the same URL masking once
  more, which covers exception messages and object reprs.
"""

from __future__ import annotations

import re
from typing import Any

from django.utils.functional import LazyObject
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

# scheme://user:password@ - the user-info ends at the first "@" before any "/", "?" or "#".
_URL_USERINFO = re.compile(
    r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/@?#<>\"']+)@"
)
MASK = "********"


def mask_url_credentials(text: str) -> str:
    """Every URL's user-info in `text` replaced by a mask (user and password)."""
    return _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


class UrlCredentialsFilter(SafeExceptionReporterFilter):
    def cleanse_setting(self, key: Any, value: Any) -> Any:
        cleansed = super().cleanse_setting(key, value)
        # A lazy object passes isinstance(str) but is not one: left as it is.
        if isinstance(cleansed, str) and not isinstance(cleansed, LazyObject):
            return mask_url_credentials(cleansed)
        return cleansed

    def get_traceback_frame_variables(self, request, tb_frame) -> Any:
        variables = super().get_traceback_frame_variables(request, tb_frame)
        pairs = variables.items() if isinstance(variables, dict) else variables
        return [(name, self.cleanse_setting(name, value)) for name, value in pairs]


class UrlCredentialsReporter(ExceptionReporter):
    def get_traceback_html(self) -> str:
        return mask_url_credentials(super().get_traceback_html())

    def get_traceback_text(self) -> str:
        return mask_url_credentials(super().get_traceback_text())
