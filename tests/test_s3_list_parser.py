"""The fast ListObjectsV2 parser (viral_clips/s3.py) reads odd keys exactly.

It reads the XML body by regular expressions; keys arrive URL-encoded
(botocore asks for EncodingType=url and decodes them), so markup, entities,
quotes and non-ASCII characters in a name must come back unchanged.
"""

import pytest
from django.conf import settings

from tests.support.s3_keys import ODD_KEYS as ODD
from viral_clips.s3 import cloudcube_client, listed_objects


@pytest.mark.django_db
@pytest.mark.parametrize("compact", [False, True], ids=["contents", "compact"])
def test_odd_keys_are_listed_exactly(cube, compact):
    client = cloudcube_client(compact_listing=compact)
    bucket, prefix = settings.CLOUDCUBE.bucket, f"{settings.CLOUDCUBE.cube}/"
    for key in ODD:
        client.put_object(Bucket=bucket, Key=prefix + key, Body=b"x")

    listed = []
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=f"{prefix}clips/", PaginationConfig={"PageSize": 2}
    ):
        listed += [(key, size) for key, size, _ in listed_objects(page)]
    assert sorted(listed) == sorted((prefix + key, 1) for key in ODD)

    folders = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}clips/", Delimiter="/")
    assert [p["Prefix"] for p in folders["CommonPrefixes"]] == [f"{prefix}clips/2026/"]
    assert sorted(key for key, _, _ in listed_objects(folders)) == sorted(
        prefix + key for key in ODD if key.count("/") == 1
    )
