"""What the runtime needs of a journal, whichever carries it.

Two implementations: :class:`hub.journal.journal.Journal`, segments on local disk
(one process, the default), and :class:`hub.journal.jetstream.JetStreamJournal`,
a replicated NATS JetStream stream shared by the workers of a cluster. Both
acknowledge an append only once it is durable, hand records to named consumers
in order, and take a consumer's ``commit`` as "everything up to here is done",
so the runtime's ingest, store and live stages are written once for both.

Positions (``end_offset``, ``commit``) are opaque increasing integers: byte
offsets in the local journal, stream sequence numbers on JetStream. A consumer
only ever commits a position the journal gave it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol


class JournalError(Exception):
    """The journal cannot do what was asked (disk failure, unknown format, misuse)."""


class JournalClosed(JournalError):
    """The journal was closed while the operation waited."""


@dataclass(frozen=True, slots=True)
class JournalBatch:
    """Records read in order, and the position just past the last one (to commit)."""

    records: list[bytes]
    end_offset: int


class JournalReaderPort(Protocol):
    """One consumer's cursor: read in order, commit how far it got."""

    consumer: str

    @property
    def position(self) -> int:
        """Position of the next record this reader returns."""
        ...

    async def read(self, max_records: int, timeout: float) -> JournalBatch:  # noqa: ASYNC109 (a poll with a deadline)
        """Up to about ``max_records`` records; waits up to ``timeout`` s when there are none."""
        ...

    def commit(self, offset: int) -> None:
        """Record that everything before ``offset`` is processed."""
        ...


class JournalPort(Protocol):
    """An append-only log with durable appends and per-consumer positions."""

    async def append(self, records: Sequence[bytes], districts: Sequence[str] = ()) -> int:
        """Append ``records``; return once they are durable.

        ``districts`` names each record's district, one per record: a partitioned
        journal routes by it (the local journal has one partition and ignores it).
        """
        ...

    def reader(self, consumer: str) -> JournalReaderPort:
        """The reader of ``consumer`` (registered on first use)."""
        ...

    @property
    def is_full(self) -> bool:
        """True while appends wait for consumers to free space."""
        ...

    def lags(self) -> dict[str, int]:
        """How far each consumer's commit is behind the head (the journal's unit)."""
        ...
