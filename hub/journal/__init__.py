"""The journal: the durable log between ingest and the consumers.

:class:`Journal` is the append-only, segmented, group-committed log on local disk
(one process, the default); :mod:`hub.journal.jetstream` is the replicated NATS
JetStream stream of cluster mode (imported where used: it needs nats-py).
Both implement :class:`hub.journal.base.JournalPort`.
"""

from hub.journal.base import (
    JournalBatch,
    JournalClosed,
    JournalError,
    JournalPort,
    JournalReaderPort,
)
from hub.journal.journal import Journal, JournalReader

__all__ = [
    "Journal",
    "JournalBatch",
    "JournalClosed",
    "JournalError",
    "JournalPort",
    "JournalReader",
    "JournalReaderPort",
]
