"""RedBeat's schedule entry, able to store a cron in a time zone.

RedBeat writes each entry's definition to Redis as JSON and knows Celery's
crontab only by its five fields: a `ZonedCrontab` (scheduling/zoned.py) would
come back as a UTC cron. `KoolclipsEntry` stores it as
``{"__type__": "zoned_crontab", ..., "timezone": "Europe/Berlin"}`` and reads
it back; every other type is RedBeat's own, so a job on UTC is stored exactly
as before. The scheduler (scheduling/beat.py) and the status reader
(scheduling/status.py) both use this class.
"""

from __future__ import annotations

import json

from redbeat.decoder import RedBeatJSONDecoder, RedBeatJSONEncoder
from redbeat.schedulers import RedBeatSchedulerEntry, get_redis

from scheduling.zoned import ZonedCrontab

ZONED = "zoned_crontab"


class EntryEncoder(RedBeatJSONEncoder):
    def default(self, obj):
        if isinstance(obj, ZonedCrontab):
            return {
                "__type__": ZONED,
                "minute": obj._orig_minute,
                "hour": obj._orig_hour,
                "day_of_week": obj._orig_day_of_week,
                "day_of_month": obj._orig_day_of_month,
                "month_of_year": obj._orig_month_of_year,
                "timezone": obj.timezone_name,
            }
        return super().default(obj)


class EntryDecoder(RedBeatJSONDecoder):
    def dict_to_object(self, d):
        if d.get("__type__") == ZONED:
            fields = {k: v for k, v in d.items() if k != "__type__"}
            return ZonedCrontab(**fields)
        return super().dict_to_object(d)


class KoolclipsEntry(RedBeatSchedulerEntry):
    """A RedBeat entry whose schedule may be a ZonedCrontab."""

    @staticmethod
    def decode_definition(definition):
        return json.loads(definition, cls=EntryDecoder)

    def save(self):
        # RedBeat's save, with the encoder above.
        definition = {
            "name": self.name,
            "task": self.task,
            "args": self.args,
            "kwargs": self.kwargs,
            "options": self.options,
            "schedule": self.schedule,
            "enabled": self.enabled,
        }
        meta = {"last_run_at": self.last_run_at}
        with get_redis(self.app).pipeline() as pipe:
            pipe.hset(self.key, "definition", json.dumps(definition, cls=EntryEncoder))
            pipe.hsetnx(self.key, "meta", json.dumps(meta, cls=RedBeatJSONEncoder))
            pipe.zadd(self.app.redbeat_conf.schedule_key, {self.key: self.score})
            pipe.execute()
        return self
