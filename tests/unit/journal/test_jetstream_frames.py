"""The journal on JetStream, without a server: partition routing and the message format."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub.journal.base import JournalError
from hub.journal.jetstream import pack, partition_of, unpack


def test_partition_of_is_crc32_mod_partitions() -> None:
    """A district's partition is crc32(UTF-8) mod P: the same in every process and release."""
    assert [partition_of(d, 16) for d in ("d01", "d02", "north", "Zürich")] == [7, 13, 2, 14]
    assert {partition_of(f"d{n}", 1) for n in range(50)} == {0}


@given(st.text(max_size=64), st.integers(min_value=1, max_value=1024))
def test_partition_of_stays_in_range(district: str, partitions: int) -> None:
    """Every district maps into 0..P-1."""
    assert 0 <= partition_of(district, partitions) < partitions


@given(st.lists(st.binary(max_size=300), max_size=50))
def test_pack_unpack_round_trip(records: list[bytes]) -> None:
    """Records framed into one message come back as they went in, in order."""
    assert unpack(pack(records)) == records


def test_unpack_refuses_what_is_not_a_frame() -> None:
    """An unknown format byte, a damaged frame or trailing bytes are errors, not records."""
    good = pack([b"abc", b"defg"])
    with pytest.raises(JournalError, match="unknown format"):
        unpack(b"\x07" + good[1:])
    with pytest.raises(JournalError, match="damaged"):
        unpack(good[:-1] + b"X")
    with pytest.raises(JournalError, match="damaged"):
        unpack(good + b"\x00")
    with pytest.raises(JournalError, match="unknown format"):
        unpack(b"")
