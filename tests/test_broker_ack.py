"""An ack that Redis refuses must not cost the worker a prefetch slot.

kombu's Redis QoS removes the delivery from Redis first and only then frees
its slot: when Redis is down at that moment (a restart, a blip), the slot is
never freed, and after `prefetch` such acks the channel consumes nothing again
until the worker restarts. The message itself is safe either way (it stays in
the unacked hash and is restored after the visibility timeout).
"""

import pytest
import redis
from kombu import Connection, Exchange, Queue

from config.celery import app

pytestmark = pytest.mark.processes  # a redis-server of the test's own, stopped


@pytest.mark.parametrize("settle", ["ack", "reject"])
def test_a_failed_ack_or_reject_frees_the_prefetch_slot(own_redis, settle):
    queue = Queue("ack-test", Exchange("ack-test"), routing_key="ack-test")
    with Connection(own_redis.url, transport=app.conf.broker_transport) as connection:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=1)
        bound = queue(channel)
        bound.declare()
        connection.Producer(channel).publish(
            {"n": 1}, exchange=queue.exchange, routing_key="ack-test"
        )
        message = bound.get(no_ack=False)
        assert message is not None
        assert not channel.qos.can_consume()  # the one slot is taken

        own_redis.stop()
        with pytest.raises((redis.ConnectionError, OSError)):
            getattr(message, settle)()
        assert channel.qos.can_consume()  # the slot is free again
