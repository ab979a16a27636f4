"""The cube client's fast paths (viral_clips/s3.py) give botocore's own results.

DeleteObjects of plain keys is serialized by hand, S3's 200-with-an-error
check reads only the body's ends, and a list page's fields outside its
<Contents> are found without a pass over the blocks: each must decide exactly
what botocore does, and the keys deleted must be the keys asked for, odd
names included.
"""

import botocore.handlers
import botocore.session
import pytest
from botocore.parsers import RestXMLParser
from django.conf import settings

from tests.support.s3_keys import ODD_KEYS as ODD
from viral_clips.s3 import (
    KeyObjects,
    _delete_request,
    _FastListParser,
    _looks_like_200_error,
    cloudcube_client,
    delete_objects_param,
    fast_timestamp,
    listed_objects,
    pack_keys,
)


def _botocore_serializer():
    client = botocore.session.get_session().create_client(
        "s3",
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="a",
        aws_secret_access_key="b",
    )
    return client._serializer, client.meta.service_model.operation_model("DeleteObjects")


@pytest.mark.parametrize("endpoint_bucket", [False, True])
@pytest.mark.parametrize("quiet", [True, False, None])
@pytest.mark.parametrize("bucket", ["bucket", "my.bucket-1"])
def test_delete_request_is_botocores(quiet, bucket, endpoint_bucket):
    serializer, model = _botocore_serializer()
    if endpoint_bucket:  # what botocore does to the model on the first call
        botocore.handlers.remove_bucket_from_url_paths_from_model(None, model, {})
    delete = {"Objects": [{"Key": key} for key in ODD]}
    if quiet is not None:
        delete["Quiet"] = quiet
    params = {"Bucket": bucket, "Delete": delete}
    assert _delete_request(params, model.http) == serializer.serialize_to_request(params, model)


def test_plain_keys_give_the_same_request():
    _, model = _botocore_serializer()
    as_dicts = {"Bucket": "b", "Delete": {"Objects": [{"Key": k} for k in ODD], "Quiet": True}}
    as_keys = {"Bucket": "b", "Delete": {"Objects": KeyObjects(ODD), "Quiet": True}}
    assert _delete_request(as_keys, model.http) == _delete_request(as_dicts, model.http)
    with pytest.raises(ValueError, match="KeyObjects"):
        _delete_request({"Bucket": "b", "Delete": {"Objects": KeyObjects([1])}}, model.http)
    # Only a client with the fast serializer gets plain keys; another one gets dicts.
    plain = botocore.session.get_session().create_client("s3", region_name="us-east-1")
    assert delete_objects_param(plain, ["k"]) == [{"Key": "k"}]
    assert delete_objects_param(plain, KeyObjects(["k", "l"])) == [{"Key": "k"}, {"Key": "l"}]


def test_packed_keys_come_back_as_they_went_in_and_a_nul_keeps_them_a_list():
    # A batch's keys are held as one string joined by NUL; a key holding a NUL
    # (which S3 cannot list in XML, but a caller may pass) keeps the list.
    assert list(KeyObjects(ODD)) == ODD and len(KeyObjects(ODD)) == len(ODD)
    assert type(pack_keys(ODD)) is KeyObjects
    odd = ["a\0b", "c"]
    assert pack_keys(odd) is odd
    _, model = _botocore_serializer()
    as_dicts = {"Bucket": "b", "Delete": {"Objects": [{"Key": k} for k in odd]}}
    fast = cloudcube_client()
    as_param = {"Bucket": "b", "Delete": {"Objects": delete_objects_param(fast, odd)}}
    assert _delete_request(as_param, model.http) == _delete_request(as_dicts, model.http)


@pytest.mark.parametrize(
    "params",
    [
        {"Bucket": "b", "Delete": {"Objects": [{"Key": "k", "VersionId": "v"}]}},
        {"Bucket": "b", "Delete": {"Objects": [{"Key": "k"}]}, "ExpectedBucketOwner": "1"},
        {"Bucket": "b", "Delete": {"Objects": [{"Key": 1}]}},
        {"Bucket": "b", "Delete": {"Objects": [{"Key": "k"}], "Quiet": "yes"}},
        {"Bucket": "b", "Delete": {"Objects": "k"}},
        {"Bucket": "", "Delete": {"Objects": [{"Key": "k"}]}},
    ],
)
def test_other_delete_requests_go_to_botocore(params):
    assert _delete_request(params, {"requestUri": "/{Bucket}?delete", "method": "POST"}) is None


LIST_PAGE = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com'
    b'/doc/2006-03-01/"><Name>b</Name><Contents><Key>a</Key></Contents>'
    b"<IsTruncated>false</IsTruncated></ListBucketResult>"
)
ERROR = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
    b"<Message>We encountered an internal error. Please try again.</Message></Error>"
)


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (200, LIST_PAGE),
        (200, LIST_PAGE + b"\n"),
        (200, LIST_PAGE[:-40]),  # cut off in transit
        (200, LIST_PAGE[:30]),
        (200, ERROR),
        (200, ERROR.split(b"\n", 1)[1]),  # no declaration
        (200, b'<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"/>'),
        (200, b"<DeleteResult></DeleteResult>"),
        (200, b""),
        (200, b"not xml"),
        (500, ERROR),
    ],
)
def test_200_error_check_is_botocores(status, body):
    assert _looks_like_200_error(status, body) == botocore.handlers._looks_like_special_case_error(
        status, body
    )


@pytest.mark.django_db
def test_odd_keys_are_deleted_exactly(cube):
    """Against the local S3 server: the hand-made request deletes what it names."""
    client = cloudcube_client()
    bucket, prefix = settings.CLOUDCUBE.bucket, f"{settings.CLOUDCUBE.cube}/"
    keep = prefix + "clips/a&b <c>.mp4.keep"
    for key in [*ODD, keep[len(prefix) :]]:
        client.put_object(Bucket=bucket, Key=prefix + key, Body=b"x")
    answer = client.delete_objects(
        Bucket=bucket, Delete={"Objects": [{"Key": prefix + key} for key in ODD], "Quiet": False}
    )
    assert sorted(d["Key"] for d in answer["Deleted"]) == sorted(prefix + key for key in ODD)
    assert answer.get("Errors", []) == []
    left = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    assert [o["Key"] for o in left["Contents"]] == [keep]


def _page(blocks: list[bytes], head: bytes = b"", between: bytes = b"", tail: bytes = b"") -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="http://s3.amazonaws.com'
        b'/doc/2006-03-01/"><Name>b</Name><Prefix>c/</Prefix><KeyCount>3</KeyCount>'
        b"<MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>" + head + between.join(blocks)
        + tail + b"</ListBucketResult>"
    )  # fmt: skip


def _block(key: bytes, extra: bytes = b"", after: bytes = b"") -> bytes:
    return (
        b"<Contents><Key>" + key + b"</Key><LastModified>2026-11-25T10:00:00.000Z</LastModified>"
        b"<ETag>&quot;abc&quot;</ETag>" + extra + b"<Size>7</Size>" + after
        + b"<StorageClass>STANDARD</StorageClass></Contents>"
    )  # fmt: skip


TOKEN = b"<NextContinuationToken>dG9rZW4=</NextContinuationToken>"
PREFIXES = b"<CommonPrefixes><Prefix>c/d/</Prefix></CommonPrefixes>"
OWNER = b"<Owner><ID>x</ID><DisplayName>y</DisplayName></Owner>"
CHECKSUM = b"<ChecksumAlgorithm>CRC32</ChecksumAlgorithm><ChecksumType>FULL_OBJECT</ChecksumType>"
BLOCKS = [_block(b"c/a&amp;b"), _block(b"c/%3CContents%3E", CHECKSUM), _block(b"c/z", b"", OWNER)]


@pytest.mark.parametrize(
    "body",
    [
        _page(BLOCKS, head=TOKEN),  # S3's own layout
        _page(BLOCKS, tail=PREFIXES + TOKEN),
        _page(BLOCKS, between=b"\n  ", tail=b"\n"),  # pretty-printed
        _page(BLOCKS[:1] + [TOKEN] + BLOCKS[1:]),  # a field between the blocks
        _page(BLOCKS[:2] + [PREFIXES] + BLOCKS[2:]),
        _page([_block(b"c/q", b"<Odd><Nested>1</Nested></Odd>")], head=TOKEN),
        _page([]),
        _page([], tail=PREFIXES),
    ],
)
def test_list_pages_parse_as_botocore_does(body):
    session = botocore.session.get_session()
    shape = session.get_service_model("s3").operation_model("ListObjectsV2").output_shape
    response = {"body": body, "headers": {}, "status_code": 200}
    ours = _FastListParser(timestamp_parser=fast_timestamp).parse(response, shape)
    theirs = RestXMLParser(timestamp_parser=fast_timestamp).parse(dict(response), shape)
    fields = ("Key", "LastModified", "Size")
    assert [{f: o[f] for f in fields} for o in ours.get("Contents", [])] == [
        {f: o[f] for f in fields} for o in theirs.get("Contents", [])
    ]
    for name in ("CommonPrefixes", "IsTruncated", "NextContinuationToken", "KeyCount", "Prefix"):
        assert ours.get(name) == theirs.get(name), name
    # The cleanup's compact client: the same objects as (key, size, LastModified).
    compact = _FastListParser(timestamp_parser=fast_timestamp)
    compact.compact = True
    short = compact.parse(dict(response), shape)
    assert "Contents" not in short
    assert short["Listed"] == listed_objects(theirs)
    for name in ("CommonPrefixes", "IsTruncated", "NextContinuationToken", "KeyCount", "Prefix"):
        assert short.get(name) == theirs.get(name), name
