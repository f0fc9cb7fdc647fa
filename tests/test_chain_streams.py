"""Descriptor-chain streams over several buffers: ChainReader.take/read and ChainWriter.write_at/view.

Buffers are bytearrays here; the virtqueue hands out slices of guest memory the same way.
"""
import pytest

from vfu_virtio.virtio.chain import ChainReader, ChainWriter, DescriptorChain, ShortRead


def bufs(*sizes: int) -> list[memoryview]:
    data = iter(range(256))
    return [memoryview(bytearray(next(data) for _ in range(n))) for n in sizes]


def test_take_is_a_view_within_a_buffer_and_bytes_across():
    r = ChainReader(bufs(4, 0, 3, 5))
    first = r.take(2)
    assert isinstance(first, memoryview) and first == b"\x00\x01"
    assert r.take(2) == b"\x02\x03" and r.remaining == 8
    moved = r.take(3)  # past the exhausted and the empty buffer, within the third
    assert isinstance(moved, memoryview) and moved == b"\x04\x05\x06"
    joined = r.take(0)
    assert joined == b""
    assert r.read(4) == b"\x07\x08\x09\x0a" and r.read_all() == b"\x0b" and r.remaining == 0
    with pytest.raises(ShortRead):
        r.take(1)


def test_read_across_buffers_and_short_reads():
    r = ChainReader(bufs(3, 3))
    assert r.read(5) == bytes(range(5))
    with pytest.raises(ShortRead):
        r.read(2)
    with pytest.raises(ShortRead):
        r.take(-1)
    assert r.read(1) == b"\x05"
    assert ChainReader([]).read_all() == b""


def test_write_at_first_last_and_middle_buffers():
    out = bufs(4, 4, 4)
    w = ChainWriter(out)
    w.write_at(11, b"S")  # the last buffer
    assert w.written == 12
    w.write_at(1, memoryview(b"ab"))  # the first buffer
    w.write_at(3, b"XYZWV")  # across three buffers
    assert [bytes(b) for b in out] == [b"\x00abX", b"YZWV", b"\x08\x09\x0aS"]
    with pytest.raises(OverflowError):
        w.write_at(10, b"123")
    w.write_at(12, b"")
    assert w.written == 12


def test_view_only_within_one_buffer():
    out = bufs(4, 6)
    w = ChainWriter(out)
    v = w.view(4, 3)
    assert v is not None and len(v) == 6  # the rest of the buffer holding the range
    v[:3] = b"abc"
    assert bytes(out[1][:3]) == b"abc" and w.written == 0  # writes through a view do not move ``written``
    assert w.view(2, 3) is None and w.view(8, 3) is None and w.view(10, 1) is None and w.view(0, 0) is None


def test_descriptor_chain_takes_precomputed_lengths():
    c = DescriptorChain(7, bufs(2, 3), bufs(5), 5, 5)
    assert (c.id, c.reader.remaining, c.writer.capacity) == (7, 5, 5)
    assert DescriptorChain(0).reader.remaining == 0 and DescriptorChain(0).writer.capacity == 0


def test_take_parts_keeps_buffers_apart():
    """``take_parts``: one view inside one buffer; across buffers the views in order (never joined), whose length
    and joined bytes are those ``take`` would give; short reads refused as by ``take``."""
    from vfu_virtio.virtio.chain import ChainReader, Scattered, ShortRead
    bufs = [memoryview(b"abcd"), memoryview(b"efgh"), memoryview(b"ij")]
    r = ChainReader(bufs)
    one = r.take_parts(3)
    assert isinstance(one, memoryview) and bytes(one) == b"abc"
    many = r.take_parts(6)
    assert isinstance(many, Scattered) and len(many) == 6 and [bytes(p) for p in many.parts] == [b"d", b"efgh", b"i"]
    assert bytes(many) == b"defghi" and r.remaining == 1
    with pytest.raises(ShortRead):
        r.take_parts(2)
    assert bytes(r.take_parts(1)) == b"j"
