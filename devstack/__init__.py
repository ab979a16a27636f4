"""The local stack: real redis-server and a local S3 server, for `make run` and the tests."""
