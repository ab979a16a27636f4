import pytest

from config.cloudcube import CloudcubeURLError, parse_cloudcube_url


def test_virtual_hosted_aws_url():
    cfg = parse_cloudcube_url("https://cloud-cube-us2.s3.amazonaws.com/abc123xyz")
    assert cfg.bucket == "cloud-cube-us2"
    assert cfg.cube == "abc123xyz"
    assert cfg.endpoint_url is None
    assert cfg.prefix == "abc123xyz/"
    assert cfg.public_prefix == "abc123xyz/public/"


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://cloud-cube.s3.amazonaws.com/c1", "us-east-1"),
        ("https://cloud-cube-eu.s3.amazonaws.com/c1", "eu-west-1"),
        ("https://cloud-cube-jp.s3.amazonaws.com/c1/", "ap-northeast-1"),
        ("https://some-bucket.s3.eu-west-2.amazonaws.com/c1", "eu-west-2"),
    ],
)
def test_aws_region_from_bucket_or_host(url, region):
    assert parse_cloudcube_url(url).region == region


def test_region_override():
    assert (
        parse_cloudcube_url("https://cloud-cube.s3.amazonaws.com/c1", "eu-west-1").region
        == "eu-west-1"
    )


def test_path_style_local_url():
    cfg = parse_cloudcube_url("http://127.0.0.1:9000/koolclips-local/mycube")
    assert cfg.endpoint_url == "http://127.0.0.1:9000"
    assert (cfg.bucket, cfg.cube) == ("koolclips-local", "mycube")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "empty"),
        ("cloud-cube.s3.amazonaws.com/abc", "http:// or https://"),
        ("ftp://cloud-cube.s3.amazonaws.com/abc", "http:// or https://"),
        ("https://cloud-cube.s3.amazonaws.com/", "exactly one path segment"),
        ("https://cloud-cube.s3.amazonaws.com/a/b", "exactly one path segment"),
        ("http://127.0.0.1:9000/onlybucket", "path-style"),
        ("http://127.0.0.1:9000/b/c/d", "path-style"),
        ("http://127.0.0.1:notaport/bucket/cube", "bad port"),
        ("https://key:secret@cloud-cube.s3.amazonaws.com/abc", "credentials"),
        ("http://127.0.0.1:9000/Bad_Bucket/cube", "invalid bucket"),
        ("http://127.0.0.1:9000/bucket/cu%20be", "invalid cube"),
    ],
)
def test_malformed_urls_say_what_is_wrong(url, message):
    with pytest.raises(CloudcubeURLError, match=message):
        parse_cloudcube_url(url)
