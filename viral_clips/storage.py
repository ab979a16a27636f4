"""The clips' storage: Cloudcube (S3), with each object's served headers fixed by its name.

django-storages would store an upload with the Content-Type the browser
claimed; a public cube then serves whatever that was (text/html included).
Here every write gets the type of its extension from viral_clips/uploads.py,
or is stored as a download when the extension is not a video or image.
"""

from __future__ import annotations

from storages.backends.s3 import S3Storage

from viral_clips.uploads import served_headers


class ClipStorage(S3Storage):
    def get_object_parameters(self, name: str) -> dict:
        params = super().get_object_parameters(name)
        params.update(served_headers(name))
        return params
