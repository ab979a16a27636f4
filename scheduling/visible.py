"""Text from outside (clip titles, S3 keys, error messages) shown as it really is.

A key like "rtl-\u202egnp.exe" renders as "rtl-exe.png" in a browser: the
right-to-left override reorders what follows it. Such characters - bidi
controls, zero-width and other invisible format characters, control
characters (newlines and tabs too: a title or key is one line), line and
paragraph separators - are shown as visible escapes
(``\\u202e``) wherever the dashboard and the admin show outside text.
It lives in `scheduling/` so the job audit trail's admin can use it too
(`viral_clips/` imports `scheduling/`, never the other way).

Zero-width joiner and non-joiner stay: emoji sequences and several scripts
(Persian, Hindi) need them, and they cannot reorder or hide text.
"""

from __future__ import annotations

import re
import unicodedata

KEPT = frozenset("\u200c\u200d")
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp"})
# Plain printable ASCII needs no look-up (most titles and keys).
_PLAIN = re.compile(r"[ -~]*")


def is_hidden(char: str) -> bool:
    return char not in KEPT and unicodedata.category(char) in HIDDEN_CATEGORIES


_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if char in _NAMED:
        return _NAMED[char]
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def has_hidden(text: str) -> bool:
    return not _PLAIN.fullmatch(text) and any(is_hidden(c) for c in text)


def visible(value: object) -> str:
    """`value` as text, each hidden or direction-changing character escaped."""
    if value is None:
        return ""
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    return "".join(_escape(c) if is_hidden(c) else c for c in text)


def describe_hidden(text: str) -> str:
    """ "U+202E RIGHT-TO-LEFT OVERRIDE, U+200B ZERO WIDTH SPACE": what `text` hides."""
    seen: list[str] = []
    for char in filter(is_hidden, text):
        label = f"U+{ord(char):04X} {unicodedata.name(char, 'control character')}"
        if label not in seen:
            seen.append(label)
    return ", ".join(seen)
