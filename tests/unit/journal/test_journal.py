"""The journal: durable appends, group commit, readers, checkpoints, retention, recovery."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from hub import metrics
from hub.clock import FakeClock
from hub.journal import Journal, JournalBatch, JournalReader
from hub.journal import segments as seg
from hub.settings import JournalSettings

SEGMENT = 64 * 1024
MIB = 1024 * 1024


def _settings(**kw: int) -> JournalSettings:
    base = {"segment_bytes": SEGMENT, "max_bytes": 64 * MIB, "commit_interval_ms": 2}
    return JournalSettings(**(base | kw))


def _records(n: int, start: int = 0, size: int = 100) -> list[bytes]:
    return [f"{i:08d}".encode().ljust(size, b"x") for i in range(start, start + n)]


async def _drain(reader: JournalReader, expect: int, within_s: float = 5.0) -> JournalBatch:
    got: list[bytes] = []
    end = reader.position
    deadline = time.monotonic() + within_s
    while len(got) < expect:
        assert time.monotonic() < deadline, f"only {len(got)} of {expect} records"
        batch = await reader.read(1000, 0.5)
        got.extend(batch.records)
        end = batch.end_offset
    return JournalBatch(got, end)


def _size(path: Path) -> int:
    return path.stat().st_size


@pytest.fixture
def clock() -> FakeClock:
    """The journal only reads the clock for log context; a fake one is enough."""
    return FakeClock()


async def test_round_trip_across_segments_and_reopen(tmp_path: Path, clock: FakeClock) -> None:
    """Records come back in order across several segments, also after closing and reopening."""
    data = _records(2000)  # ~216 KiB: four segments of 64 KiB
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        end = 0
        for i in range(0, len(data), 250):
            end = await journal.append(data[i : i + 250])
        assert end == journal.head_offset == sum(seg.HEADER_SIZE + len(r) for r in data)
        assert len(seg.scan(tmp_path)) >= 4
        batch = await _drain(journal.reader("a"), len(data))
        assert batch.records == data
        assert batch.end_offset == end
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        assert journal.head_offset == end
        again = await _drain(journal.reader("b"), len(data))
        assert again.records == data


async def test_group_commit_coalesces_concurrent_appends(tmp_path: Path, clock: FakeClock) -> None:
    """Fifty appends issued together share a handful of fsyncs, each returning its own end."""
    async with Journal(tmp_path, _settings(commit_interval_ms=20), clock=clock) as journal:
        before = journal.fsync_count
        ends = await asyncio.gather(*(journal.append([b"r%03d" % i]) for i in range(50)))
        assert journal.fsync_count - before <= 3
        assert sorted(ends) == [(seg.HEADER_SIZE + 4) * (i + 1) for i in range(50)]
        batch = await _drain(journal.reader("c"), 50)
        assert sorted(batch.records) == [b"r%03d" % i for i in range(50)]


async def test_append_returns_only_once_durable(tmp_path: Path, clock: FakeClock) -> None:
    """When append returns, the records are in the segment file (a reopen sees them)."""
    journal = Journal(tmp_path, _settings(), clock=clock)
    journal.open()
    end = await journal.append([b"alpha", b"beta"])
    assert _size(seg.segment_path(tmp_path, 0)) == end
    journal.close()
    reopened = Journal(tmp_path, _settings(), clock=clock)
    reopened.open()
    try:
        batch = await reopened.reader("x").read(10, 0)
        assert batch.records == [b"alpha", b"beta"]
    finally:
        reopened.close()


async def test_reader_is_woken_promptly_by_an_append(tmp_path: Path, clock: FakeClock) -> None:
    """A reader waiting with a long timeout gets a new record within milliseconds of its commit."""
    async with Journal(tmp_path, _settings(commit_interval_ms=1), clock=clock) as journal:
        reader = journal.reader("live")
        waiting = asyncio.create_task(reader.read(100, 10.0))
        await asyncio.sleep(0)  # let the reader start waiting
        started = time.perf_counter()
        await journal.append([b"alert-worthy"])
        batch = await waiting
        assert batch.records == [b"alert-worthy"]
        assert time.perf_counter() - started < 0.5


async def test_read_times_out_with_an_empty_batch(tmp_path: Path, clock: FakeClock) -> None:
    """With nothing new, read returns an empty batch at the reader's position after the timeout."""
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        await journal.append([b"one"])
        reader = journal.reader("r")
        first = await reader.read(10, 0.01)
        assert first.records == [b"one"]
        empty = await reader.read(10, 0.02)
        assert empty.records == []
        assert empty.end_offset == first.end_offset


async def test_max_records_is_respected(tmp_path: Path, clock: FakeClock) -> None:
    """read never returns more than max_records, and the next read continues where it stopped."""
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        await journal.append(_records(30))
        reader = journal.reader("r")
        first = await reader.read(7, 0)
        second = await reader.read(100, 0)
        assert len(first.records) == 7
        assert first.records + second.records == _records(30)


async def test_checkpoints_survive_reopen(tmp_path: Path, clock: FakeClock) -> None:
    """A committed offset is where the consumer resumes after a restart."""
    data = _records(100)
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        await journal.append(data)
        reader = journal.reader("store")
        batch = await reader.read(40, 0)
        reader.commit(batch.end_offset)
        assert reader.lag_bytes == journal.head_offset - batch.end_offset
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        assert journal.consumers == {"store": batch.end_offset}
        rest = await _drain(journal.reader("store"), 60)
        assert rest.records == data[40:]


async def test_uncommitted_records_are_read_again_after_reopen(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Read but not committed means delivered again (at-least-once)."""
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        await journal.append([b"a", b"b"])
        reader = journal.reader("c")
        await reader.read(10, 0)
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        assert (await journal.reader("c").read(10, 0)).records == [b"a", b"b"]


async def test_segments_are_removed_once_every_consumer_is_past_them(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A segment stays while any registered consumer needs it and goes when all are past it."""
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        fast, slow = journal.reader("fast"), journal.reader("slow")
        for i in range(0, 2000, 200):
            await journal.append(_records(200, i))
        segments_before = len(seg.scan(tmp_path))
        assert segments_before >= 4
        batch = await _drain(fast, 2000)
        fast.commit(batch.end_offset)
        await asyncio.sleep(0.05)
        assert len(seg.scan(tmp_path)) == segments_before  # slow still needs them
        slow_batch = await _drain(slow, 2000)
        slow.commit(slow_batch.end_offset)

        def removed() -> bool:
            return len(seg.scan(tmp_path)) == 1

        deadline = time.monotonic() + 5
        while not removed():
            assert time.monotonic() < deadline, seg.scan(tmp_path)
            await asyncio.sleep(0.01)
        assert journal.bytes_on_disk == seg.scan(tmp_path)[0].size
        assert journal.oldest_offset > 0


async def test_torn_tail_mid_record_is_truncated_on_open(tmp_path: Path, clock: FakeClock) -> None:
    """A record cut short by a crash is dropped on open; everything before it is intact."""
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        good_end = await journal.append([b"first", b"second"])
        await journal.append([b"third-record-that-will-be-torn"])
    path = seg.segment_path(tmp_path, 0)
    os.truncate(path, _size(path) - 7)
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        assert journal.head_offset == good_end
        assert _size(path) == good_end
        assert (await journal.reader("r").read(10, 0)).records == [b"first", b"second"]
        # Appends continue cleanly after the truncation point.
        await journal.append([b"fourth"])
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        got = await journal.reader("r2").read(10, 0)
        assert got.records == [b"first", b"second", b"fourth"]


@pytest.mark.parametrize(
    "garbage", [b"\x00" * 64, os.urandom(300), b"\xff\xff\xff\x7f" + b"z" * 20]
)
async def test_garbage_tail_is_truncated_on_open(
    tmp_path: Path, clock: FakeClock, garbage: bytes
) -> None:
    """Zeros, random bytes or an absurd length after the last record never become records."""
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        end = await journal.append([b"kept"])
    with seg.segment_path(tmp_path, 0).open("ab") as fh:
        fh.write(garbage)
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        assert journal.head_offset == end
        assert (await journal.reader("r").read(10, 0)).records == [b"kept"]


async def test_full_journal_makes_append_wait_until_a_consumer_commits(
    tmp_path: Path, clock: FakeClock
) -> None:
    """At max_bytes append waits (hub_journal_full=1), then completes once space is freed."""
    settings = _settings(max_bytes=MIB, segment_bytes=SEGMENT)
    async with Journal(tmp_path, settings, clock=clock) as journal:
        reader = journal.reader("only")
        chunk = _records(100, size=1000)  # ~100 KiB per append
        for _ in range(10):
            await journal.append(chunk)
        blocked = asyncio.create_task(journal.append(chunk))
        deadline = time.monotonic() + 5
        while not journal.is_full:
            assert time.monotonic() < deadline, "append did not wait"
            await asyncio.sleep(0.005)
        assert not blocked.done()
        assert metrics.JOURNAL_FULL._value.get() == 1
        assert journal.bytes_on_disk <= MIB
        batch = await _drain(reader, 1000)
        reader.commit(batch.end_offset)
        end = await asyncio.wait_for(blocked, 5)
        assert end == journal.head_offset
        assert not journal.is_full
        assert metrics.JOURNAL_FULL._value.get() == 0
        rest = await _drain(reader, 100)
        assert rest.records == chunk


async def test_new_consumer_starts_at_oldest_retained_offset(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A consumer registered later reads everything still retained, not just new records."""
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        first = journal.reader("first")
        for i in range(0, 1500, 300):
            await journal.append(_records(300, i))
        batch = await _drain(first, 1500)
        # Commit up to a point inside the log: earlier segments go away.
        first.commit(batch.end_offset - 300 * 108)
        deadline = time.monotonic() + 5
        while journal.oldest_offset == 0:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        oldest = journal.oldest_offset
        late = journal.reader("late")
        assert late.position == oldest
        got = await _drain(late, 1)
        assert got.records[0] == _records(1500)[(oldest // 108)]


async def test_commit_outside_the_log_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    """Committing past the durable head is a programming error and raises ValueError."""
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        end = await journal.append([b"x"])
        reader = journal.reader("r")
        with pytest.raises(ValueError, match="outside"):
            reader.commit(end + 1)


async def test_unregistered_consumer_no_longer_holds_segments(
    tmp_path: Path, clock: FakeClock
) -> None:
    """unregister forgets a consumer on disk, so it no longer appears after reopen."""
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        journal.reader("gone")
        journal.reader("stays")
        journal.unregister("gone")
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        assert set(journal.consumers) == {"stays"}


async def test_records_survive_a_crash_without_close(tmp_path: Path, clock: FakeClock) -> None:
    """A journal abandoned without close (the process killed) still holds every appended record."""
    crashed = Journal(tmp_path, _settings(), clock=clock)
    crashed.open()
    await crashed.append(_records(50))
    reader = crashed.reader("store")
    batch = await reader.read(20, 0)
    reader.commit(batch.end_offset)
    # No close(): a second process opens the same folder.
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        resumed = await _drain(journal.reader("store"), 30)
        assert resumed.records[-30:] == _records(50)[20:]
        assert journal.head_offset == 50 * 108


async def test_zero_commit_interval_still_coalesces_while_fsync_runs(
    tmp_path: Path, clock: FakeClock
) -> None:
    """With commit_interval_ms=0 appends arriving during an fsync join the next one."""
    async with Journal(tmp_path, _settings(commit_interval_ms=0), clock=clock) as journal:
        ends = await asyncio.gather(*(journal.append([b"x" * 10]) for _ in range(40)))
        assert len(set(ends)) == 40
        assert journal.fsync_count < 40
        batch = await _drain(journal.reader("r"), 40)
        assert batch.records == [b"x" * 10] * 40


async def test_lag_is_reported_per_consumer(tmp_path: Path, clock: FakeClock) -> None:
    """lags() and hub_journal_lag_bytes show what each consumer has not committed."""
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        a, b = journal.reader("lag-a"), journal.reader("lag-b")
        end = await journal.append(_records(10))
        batch = await a.read(100, 0)
        a.commit(batch.end_offset)
        assert journal.lags() == {"lag-a": 0, "lag-b": end}
        assert b.lag_bytes == end
        assert metrics.JOURNAL_LAG.labels(consumer="lag-b")._value.get() == end


async def test_unread_counts_what_was_read_even_before_the_commit(
    tmp_path: Path, clock: FakeClock
) -> None:
    """unread() drops as a consumer reads; lags() only when it commits."""
    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        reader = journal.reader("slow-commit")
        end = await journal.append(_records(10))
        assert journal.unread() == {"slow-commit": end}
        batch = await reader.read(100, 0)
        assert journal.unread() == {"slow-commit": end - batch.end_offset}
        assert journal.lags() == {"slow-commit": end}


async def test_disk_failure_fails_that_append_only(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write error raises JournalError for that group; the journal keeps working after."""
    from hub.journal import JournalError

    async with Journal(tmp_path, _settings(), clock=clock) as journal:
        assert journal._writer is not None
        real = journal._writer.write
        calls = 0

        def flaky(payloads: list[bytes]) -> list[tuple[int, int]]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise OSError(28, "No space left on device")
            return real(payloads)

        monkeypatch.setattr(journal._writer, "write", flaky)
        with pytest.raises(JournalError, match="No space"):
            await journal.append([b"lost-and-not-acked"])
        end = await journal.append([b"kept"])
        assert (await journal.reader("r").read(10, 0)).records == [b"kept"]
        assert end == journal.head_offset
