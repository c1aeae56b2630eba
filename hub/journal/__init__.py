"""The journal: append-only, segmented, group-committed on-disk log between ingest and consumers."""

from hub.journal.journal import (
    Journal,
    JournalBatch,
    JournalClosed,
    JournalError,
    JournalReader,
)

__all__ = ["Journal", "JournalBatch", "JournalClosed", "JournalError", "JournalReader"]
