"""kombu's Redis transport, with a refused ack that still frees its prefetch slot.

kombu's Redis QoS removes a delivery from Redis, then frees its slot. When
Redis is away at that moment (a restart, a blip) the removal raises and the
slot stays taken; after `prefetch` such acks the worker consumes nothing until
it restarts, while beat goes on sending. Freeing the slot is safe: the message
is still in the unacked hash and comes back after the visibility timeout, where
the guard's ledger refuses a slot that already ran.
"""

from __future__ import annotations

from kombu.transport import redis, virtual


class QoS(redis.QoS):
    def ack(self, delivery_tag) -> None:
        try:
            super().ack(delivery_tag)
        except Exception:
            virtual.QoS.ack(self, delivery_tag)
            raise

    def reject(self, delivery_tag, requeue: bool = False) -> None:
        try:
            super().reject(delivery_tag, requeue=requeue)
        except Exception:
            virtual.QoS.ack(self, delivery_tag)
            raise


class Channel(redis.Channel):
    QoS = QoS


class Transport(redis.Transport):
    Channel = Channel
