"""Read what waits in the real broker (kombu's Redis transport keeps a list per queue)."""

from __future__ import annotations

import base64
import json


def queued_messages(client, queue: str = "celery") -> list[dict]:
    """The task messages waiting in `queue`: task name, id and keyword arguments."""
    found = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        args, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        found.append({"task": message["headers"]["task"], "id": message["headers"]["id"], **kwargs})
    return found
