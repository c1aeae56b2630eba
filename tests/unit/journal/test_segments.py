"""Record framing: any cut or corruption of a segment keeps exactly the whole, valid prefix."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.journal import segments as seg

payloads = st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=20)


def _ends(records: list[bytes]) -> list[int]:
    out, pos = [0], 0
    for r in records:
        pos += seg.HEADER_SIZE + len(r)
        out.append(pos)
    return out


@settings(max_examples=100)
@given(records=payloads, cut=st.floats(min_value=0, max_value=1))
def test_cut_anywhere_keeps_the_whole_records_before_it(
    tmp_path_factory: object, records: list[bytes], cut: float
) -> None:
    """A segment truncated at any byte recovers to the last complete record before the cut."""
    data = seg.frame_all(records)
    at = int(len(data) * cut)
    path = Path(tmp_path_factory.mktemp("cut")) / "0.seg"  # type: ignore[attr-defined]
    path.write_bytes(data[:at])
    valid = seg.valid_length(path)
    assert valid == max(e for e in _ends(records) if e <= at)
    parsed, used, corrupt = seg.parse(data[:valid], 1000)
    assert parsed == records[: _ends(records).index(valid)]
    assert used == valid
    assert not corrupt


@settings(max_examples=100)
@given(records=payloads, where=st.floats(min_value=0, max_value=0.999), flip=st.integers(1, 255))
def test_a_flipped_byte_is_never_returned_as_data(
    records: list[bytes], where: float, flip: int
) -> None:
    """Corrupting one byte stops parsing at or before the damaged record; no garbage comes out."""
    data = bytearray(seg.frame_all(records))
    at = int(len(data) * where)
    data[at] ^= flip
    parsed, _, _ = seg.parse(bytes(data), 1000)
    ends = _ends(records)
    damaged = max(i for i, e in enumerate(ends) if e <= at)  # index of the record hit
    assert parsed == records[: len(parsed)]
    assert len(parsed) <= damaged
