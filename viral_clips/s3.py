"""A boto3 S3 client for the app's Cloudcube cube, configured in one place."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Iterator
from datetime import datetime
from urllib.parse import unquote_plus
from xml.sax.saxutils import escape, unescape

import boto3
import botocore.handlers
import botocore.session
from botocore.config import Config
from botocore.parsers import ResponseParserFactory, RestXMLParser
from botocore.utils import parse_timestamp, percent_encode
from django.conf import settings

_session: boto3.session.Session | None = None
_session_lock = threading.Lock()  # making clients from one session is not thread-safe


def fast_timestamp(value):
    """S3's ISO 8601 timestamps ("2026-12-01T09:30:25.000Z") by the standard library.

    botocore's default parser (dateutil) costs about half a millisecond a key:
    most of the CPU of listing a 1,000-key page. Anything else (HTTP dates in
    headers, epoch numbers) still goes to botocore's parser.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None:
            return parsed
    return parse_timestamp(value)


_S3_STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z")


def _utc_stamp(value: str) -> datetime:
    """`fast_timestamp` for a string: S3's own form parsed directly, anything else by it."""
    if _S3_STAMP.fullmatch(value):
        return datetime.fromisoformat(value)
    return fast_timestamp(value)


_CONTENTS = re.compile(rb"<Contents>(.*?)</Contents>", re.DOTALL)
_COMMON_PREFIX = re.compile(rb"<CommonPrefixes>\s*<Prefix>([^<]*)</Prefix>\s*</CommonPrefixes>")
_FIELD = re.compile(rb"<(\w+)>([^<]*)</\1>")
# S3's order: Key, LastModified, ETag, (ChecksumAlgorithm...), Size, StorageClass.
# Between LastModified and Size only flat elements (ETag, checksums) are skipped:
# element by element, never past the block's end.
_CONTENTS_IN_ORDER = re.compile(
    rb"<Contents><Key>([^<]*)</Key><LastModified>([^<]*)</LastModified>"
    rb"(?:<[A-Za-z]+>[^<]*</[A-Za-z]+>)*?<Size>(\d+)</Size>"
)
_OPEN, _CLOSE = b"<Contents>", b"</Contents>"
_groups = re.Match.groups
_ENTITIES = {"&quot;": '"', "&apos;": "'"}
_OBJECT_FIELDS = {"Key", "LastModified", "Size", "ETag", "StorageClass"}
_INT_FIELDS = {"Size", "KeyCount", "MaxKeys"}


def _text(raw: bytes) -> str:
    text = raw.decode()
    return unescape(text, _ENTITIES) if "&" in text else text


def _outside_contents(body: bytes) -> bytes:
    """The body without its <Contents> blocks.

    When the blocks follow each other with nothing between them (S3's own
    output), that is what comes before the first and after the last: cut in
    two slices instead of a regular-expression pass over the whole page.
    """
    count = body.count(_OPEN)
    if not count:
        return body
    first, last = body.find(_OPEN), body.rfind(_CLOSE) + len(_CLOSE)
    if body.count(_CLOSE) == count and body.count(_CLOSE + _OPEN, first, last) == count - 1:
        return body[:first] + body[last:]
    return _CONTENTS.sub(b"", body)


def _url_decoded(listed: list[tuple], parsed: dict) -> list[tuple]:
    """Keys as botocore's decode_list_object_v2 gives them: botocore asks for
    EncodingType=url itself, and decodes Contents' keys when S3 says it encoded
    them; "Listed" is not Contents, so it is decoded here the same way."""
    if parsed.get("EncodingType") != "url":
        return listed
    return [(unquote_plus(key), size, when) for key, size, when in listed]


class _FastListParser(RestXMLParser):
    """botocore's rest-xml parser, with ListObjectsV2's body read by regular expressions.

    botocore's generic parser walks the model for every element: about 40 ms
    of CPU a 1,000-key page, most of a parallel listing's cost. S3's list body
    is flat, so each <Contents> is read for Key, LastModified and Size in one
    pass (in S3's element order; any other layout is read field by field, with
    ETag and StorageClass too). Owner and checksums are not read. Headers, errors and every
    other operation go through botocore as before.
    """

    compact = False  # Contents as "Listed": (key, size, LastModified) tuples

    def _parse_payload(self, response, shape, member_shapes, final_parsed):
        if shape.name != "ListObjectsV2Output":
            return super()._parse_payload(response, shape, member_shapes, final_parsed)
        body = response["body"]
        if self.compact:
            listed = self._listed_fast(body)
            if listed is not None:
                self._list_fields(body, member_shapes, final_parsed)
                final_parsed["Listed"] = _url_decoded(listed, final_parsed)
                return
        contents = self._contents_fast(body)
        slow = contents is None
        contents = contents or []
        for block in _CONTENTS.findall(body) if slow else ():
            item = {}
            for name, raw in _FIELD.findall(block):
                name = name.decode()
                if name in _OBJECT_FIELDS:
                    item[name] = raw
            obj = {"Key": _text(item["Key"])}
            if "LastModified" in item:
                obj["LastModified"] = self._timestamp_parser(item["LastModified"].decode())
            if "Size" in item:
                obj["Size"] = int(item["Size"])
            for name in ("ETag", "StorageClass"):
                if name in item:
                    obj[name] = _text(item[name])
            contents.append(obj)
        if contents and not self.compact:
            final_parsed["Contents"] = contents
        self._list_fields(body, member_shapes, final_parsed)
        if self.compact:
            listed = [(obj["Key"], obj.get("Size", 0), obj.get("LastModified")) for obj in contents]
            final_parsed["Listed"] = _url_decoded(listed, final_parsed)

    def _list_fields(self, body: bytes, member_shapes, final_parsed) -> None:
        """The page's fields other than its objects."""
        rest = _outside_contents(body)
        prefixes = [{"Prefix": _text(raw)} for raw in _COMMON_PREFIX.findall(rest)]
        if prefixes:
            final_parsed["CommonPrefixes"] = prefixes
        head = _COMMON_PREFIX.sub(b"", rest) if prefixes else rest
        for name, raw in _FIELD.findall(head):
            name = name.decode()
            if name == "IsTruncated":
                final_parsed[name] = raw.strip().lower() == b"true"
            elif name in _INT_FIELDS:
                final_parsed[name] = int(raw)
            elif name in member_shapes:
                final_parsed[name] = _text(raw)
        final_parsed.setdefault("IsTruncated", False)

    def _listed_fast(self, body: bytes) -> list[tuple] | None:
        """(key, size, LastModified) of every <Contents>, as `_contents_fast` reads them."""
        stamp = self._timestamp_parser
        if stamp is fast_timestamp:
            stamp = _utc_stamp
        # finditer, not findall: no second list of a page's raw fields at once.
        listed = [
            (key.decode() if b"&" not in key else _text(key), int(size), stamp(when.decode()))
            for key, when, size in map(_groups, _CONTENTS_IN_ORDER.finditer(body))
        ]
        return listed if len(listed) == body.count(b"<Contents>") else None

    def _contents_fast(self, body: bytes) -> list[dict] | None:
        """Key, LastModified and Size of every <Contents> in S3's own element order
        (one pass); None when a block is laid out otherwise (then field by field)."""
        found = _CONTENTS_IN_ORDER.findall(body)
        if len(found) != body.count(b"<Contents>"):
            return None
        stamp = self._timestamp_parser
        return [
            {"Key": _text(key), "LastModified": stamp(when.decode()), "Size": int(size)}
            for key, when, size in found
        ]


_DELETE_NS = b'<Delete xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
_KEY_SEP = "</Key></Object><Object><Key>"


class _FastDeleteSerializer:
    """botocore's serializer (and its parameter validation), with DeleteObjects of
    plain keys written by hand.

    botocore builds an ElementTree of the request, after validating every
    parameter against the model: about 20 ms of CPU a 1,000-key request, the
    most expensive part of a cleanup's delete. The common shape (Bucket,
    Delete={"Objects": [{"Key": str}...], "Quiet": bool}, nothing else) gives
    exactly the request botocore would (tests/test_s3_list_parser.py compares
    them); anything else (version ids, an expected bucket owner, a bad
    parameter) goes to botocore's serializer and validation as before.
    Checksums, signing, endpoints and retries are botocore's in both cases.
    """

    def __init__(self, inner):
        self._inner = inner

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def serialize_to_request(self, parameters, operation_model):
        if operation_model.name == "DeleteObjects":
            fast = _delete_request(parameters, operation_model.http)
            if fast is not None:
                return fast
        return self._inner.serialize_to_request(parameters, operation_model)


class KeyObjects:
    """DeleteObjects' Objects as plain keys, for a client made here.

    [{"Key": key}, ...] for 1,000 keys is 1,000 dicts, and 1,000 str objects
    are about twice the keys' text: batches wait and stay in flight (48 at
    S3's latency) for half a second each. This holds them as one string,
    joined by a NUL (no key S3 lists in XML can hold one), which the fast
    serializer writes straight into the request. Only for clients whose
    serializer is `_FastDeleteSerializer` (see `delete_objects_param`).
    """

    __slots__ = ("_text", "_count")
    _SEPARATOR = "\0"

    def __init__(self, keys: Iterable[str]):
        keys = list(keys)
        if not keys or not all(type(key) is str for key in keys):
            raise ValueError("KeyObjects holds 1 to 1,000 keys, each a str")
        text = self._SEPARATOR.join(keys)
        if text.count(self._SEPARATOR) != len(keys) - 1:
            raise ValueError("KeyObjects: a key holds a NUL; pass it as a list")
        self._text, self._count = text, len(keys)

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        return iter(self._text.split(self._SEPARATOR))

    def xml_keys(self) -> str:
        """The keys, escaped, joined as DeleteObjects' body joins them."""
        text = self._text
        if "&" in text or "<" in text or ">" in text:
            return _KEY_SEP.join(escape(key) for key in self)
        return text.replace(self._SEPARATOR, _KEY_SEP)


def pack_keys(keys: list[str]) -> KeyObjects | list[str]:
    """`keys` as KeyObjects, or as they are when one of them holds a NUL."""
    try:
        return KeyObjects(keys)
    except ValueError:
        return keys


def delete_objects_param(client, keys: Iterable[str]) -> list | KeyObjects:
    """The Objects parameter of a DeleteObjects of `keys` for this client."""
    if isinstance(getattr(client, "_serializer", None), _FastDeleteSerializer):
        keys = keys if type(keys) is KeyObjects else pack_keys(list(keys))
        if type(keys) is KeyObjects:
            return keys
    return [{"Key": key} for key in keys]


def _delete_request(parameters, http: dict) -> dict | None:
    """DeleteObjects' request dict for `http` (the operation model's, which botocore
    rewrites once the bucket goes into the endpoint), or None for botocore."""
    bucket, delete = parameters.get("Bucket"), parameters.get("Delete")
    if (
        len(parameters) != 2
        or not isinstance(bucket, str)
        or not bucket
        or not isinstance(delete, dict)
        or not set(delete) <= {"Objects", "Quiet"}
        or not isinstance(delete.get("Objects"), list | KeyObjects)
        or not isinstance(delete.get("Quiet", False), bool)
    ):
        return None
    objects = delete["Objects"]
    parts = [_DELETE_NS]
    if type(objects) is KeyObjects:
        parts += (b"<Object><Key>", objects.xml_keys().encode(), b"</Key></Object>")
    else:
        keys = []
        for obj in objects:
            key = obj.get("Key") if type(obj) is dict and len(obj) == 1 else None
            if type(key) is not str:
                return None
            keys.append(key)
        if keys:
            text = "\n".join(keys)
            if "&" in text or "<" in text or ">" in text:
                keys = [escape(key) for key in keys]
            parts.append(b"<Object><Key>%s</Key></Object>" % _KEY_SEP.join(keys).encode())
    if "Quiet" in delete:
        parts.append(b"<Quiet>true</Quiet>" if delete["Quiet"] else b"<Quiet>false</Quiet>")
    parts.append(b"</Delete>")
    bucket = percent_encode(bucket)
    request = {
        "url_path": http["requestUri"].replace("{Bucket}", bucket),
        "query_string": {},
        "method": http["method"],
        "headers": {},
        "body": b"".join(parts),
    }
    if "authPath" in http:
        request["auth_path"] = http["authPath"].replace("{Bucket}", bucket)
    return request


_XML_DECLARATION = re.compile(rb"\s*(?:<\?xml[^>]*\?>\s*)?<([A-Za-z_][\w.:-]*)")


def _looks_like_200_error(status_code: int, body: bytes) -> bool:
    """What botocore's check of S3's 200 answers decides, without parsing the body.

    S3 may answer 200 with an <Error> body, or a 200 whose body was cut off;
    botocore parses every such body whole with ElementTree to find out (at a
    1,000-key list page, a quarter of a listing's CPU). An <Error> root, or a
    body that does not end with its root's closing tag, is an error here too.
    """
    if status_code != 200 or not body:
        return False
    root = _XML_DECLARATION.match(body)
    if root is None:
        return True
    name = root.group(1)
    if name == b"Error":
        return True
    tail = body.rstrip()
    return not (tail.endswith(b"</" + name + b">") or tail.endswith(b"/>"))


def _handle_200_error(operation_model, response_dict, **kwargs):
    """botocore.handlers._handle_200_error, with `_looks_like_200_error`."""
    if not botocore.handlers._should_handle_200_error(operation_model, response_dict):
        return
    if _looks_like_200_error(response_dict["status_code"], response_dict["body"]):
        response_dict["status_code"] = 500


def _speed_up(client):
    """The fast DeleteObjects serializer and 200-error check on one client."""
    serializer = getattr(client, "_serializer", None)
    if serializer is not None and not isinstance(serializer, _FastDeleteSerializer):
        client._serializer = _FastDeleteSerializer(serializer)
    events = client.meta.events
    events.unregister("before-parse.s3.*", botocore.handlers._handle_200_error)
    events.register_first("before-parse.s3.*", _handle_200_error)
    return client


class _ParserFactory(ResponseParserFactory):
    def __init__(self, compact: bool = False):
        super().__init__()
        self.compact = compact

    def create_parser(self, protocol_name):
        if protocol_name == "rest-xml":
            parser = _FastListParser(**self._defaults)
            parser.compact = self.compact
            return parser
        return super().create_parser(protocol_name)


def listed_objects(page: dict) -> list[tuple]:
    """A ListObjectsV2 page's objects as (key, size, LastModified): a compact
    client's "Listed", or any client's "Contents"."""
    listed = page.get("Listed")
    if listed is not None:
        return listed
    return [
        (obj["Key"], obj.get("Size", 0), obj["LastModified"]) for obj in page.get("Contents", ())
    ]


def _boto3_session() -> boto3.session.Session:
    global _session
    if _session is None:
        core = botocore.session.get_session()
        factory = _ParserFactory()
        factory.set_parser_defaults(timestamp_parser=fast_timestamp)
        core.register_component("response_parser_factory", factory)
        _session = boto3.session.Session(botocore_session=core)
    return _session


def cloudcube_client(
    *,
    connect_timeout: float = 5,
    read_timeout: float = 30,
    max_attempts: int = 5,
    compact_listing: bool = False,
):
    """An S3 client for the cube's bucket (thread-safe once made).

    With `compact_listing`, its ListObjectsV2 pages hold "Listed", a list of
    (key, size, LastModified) tuples, instead of "Contents" dicts (read them
    with `listed_objects`): the cleanup's listing, a million keys, makes
    neither the dicts nor the tuples from them.

    Retries use botocore's `standard` mode, set explicitly: it retries
    throttling (SlowDown/503) and transient errors with backoff; the cleanup's
    DeleteObjects take throttling back from it (viral_clips/cleanup/pipeline.py).
    The pool holds a connection for each of the cleanup's delete threads and
    listers.
    """
    cube = settings.CLOUDCUBE
    with _session_lock:
        client = _boto3_session().client(
            "s3",
            endpoint_url=cube.endpoint_url,
            region_name=cube.region,
            aws_access_key_id=settings.CLOUDCUBE_ACCESS_KEY_ID,
            aws_secret_access_key=settings.CLOUDCUBE_SECRET_ACCESS_KEY,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path" if cube.endpoint_url else "virtual"},
                retries={"mode": "standard", "max_attempts": max_attempts},
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_pool_connections=max(
                    10, settings.CLEANUP_DELETE_CONCURRENCY + settings.CLEANUP_LIST_CONCURRENCY + 2
                ),
            ),
        )
    client = _speed_up(client)
    if compact_listing:
        factory = _ParserFactory(compact=True)
        factory.set_parser_defaults(timestamp_parser=fast_timestamp)
        client._endpoint._response_parser_factory = factory
    return client
