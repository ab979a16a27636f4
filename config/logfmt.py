"""Log records as single lines: a message cannot forge another line.

Heroku's log drains and alerts read stdout line by line. A message that
carries text from outside (an S3 key, a username, an exception message) with a
newline or a terminal escape in it could otherwise print a line that looks
like the app's own ("ERROR ... cleanup failed"). Control characters, and the
Unicode line and paragraph separators, in the message are written as escapes
(``\\n``, ``\\x1b``, ``\\u2028``). A traceback (exc_info) keeps its lines:
the formatter writes it, not the caller.

Call sites that log a key or title also quote it (``%r``), so where one ends
stays readable; this is the net under them.
"""

from __future__ import annotations

import logging
import re

_BREAKING = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r"}


def one_line(text: str) -> str:
    def escape(match: re.Match) -> str:
        char = match.group()
        if char in _NAMED:
            return _NAMED[char]
        code = ord(char)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _BREAKING.sub(escape, text)


class OneLineFormatter(logging.Formatter):
    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = one_line(record.message)
        return super().formatMessage(record)
