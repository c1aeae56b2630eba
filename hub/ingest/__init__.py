"""Ingest: the MQTT session, topic and payload decoding, and the dead-letter store.

``mqtt_source`` is the only module that speaks MQTT for ingest; ``topics`` and
``decode`` are pure; ``dead_letters`` keeps what was refused.
"""

from hub.ingest.decode import REASONS, Decoded, Decoder
from hub.ingest.topics import TopicError, TopicInfo, parse_topic, subscriptions

__all__ = [
    "REASONS",
    "Decoded",
    "Decoder",
    "TopicError",
    "TopicInfo",
    "parse_topic",
    "subscriptions",
]
