"""GuestMemory (driver side): the memfd, bounds checks and the guest-address allocator."""
from __future__ import annotations

import mmap
import os

import pytest
from unittest import mock
from hypothesis import given, settings
from hypothesis import strategies as st

from vfu_virtio.client import memory as memory_mod
from vfu_virtio.client.memory import DEFAULT_IOVA_BASE, GuestMemory, GuestMemoryError, GuestMemoryFull

PAGE = mmap.PAGESIZE


@pytest.fixture
def mem():
    with GuestMemory(1 << 20) as m:
        yield m


def test_default_base_is_not_zero_and_size_is_page_rounded():
    with GuestMemory(PAGE + 1) as m:
        assert m.iova_base == DEFAULT_IOVA_BASE != 0
        assert m.size == 2 * PAGE
        assert m.iova_end == m.iova_base + 2 * PAGE
        assert m.free_bytes == 2 * PAGE


@pytest.mark.parametrize("base", [0, 123, PAGE + 8])
def test_bad_iova_base_refused(base):
    with pytest.raises(ValueError, match="iova_base"):
        GuestMemory(PAGE, iova_base=base)


def test_alloc_respects_alignment_and_bounds(mem):
    a = mem.alloc(3, 1)
    b = mem.alloc(10, 64)
    c = mem.alloc(5000, 4096)
    assert a == mem.iova_base
    assert b % 64 == 0 and b >= a + 3
    assert c % 4096 == 0 and c >= b + 10
    for addr, size in ((a, 3), (b, 10), (c, 5000)):
        assert mem.iova_base <= addr and addr + size <= mem.iova_end
        assert mem.allocation_size(addr) == size


@pytest.mark.parametrize("size,align", [(0, 16), (-1, 16), (16, 0), (16, 3), (16, 48)])
def test_alloc_argument_errors(mem, size, align):
    with pytest.raises(ValueError):
        mem.alloc(size, align)


def test_exhaustion_then_coalescing_frees_everything(mem):
    blocks = [mem.alloc(PAGE, PAGE) for _ in range(mem.size // PAGE)]
    assert mem.free_bytes == 0
    with pytest.raises(GuestMemoryFull, match="no free guest range of 1 bytes"):
        mem.alloc(1)
    # free in an interleaved order so both neighbour merges are exercised
    for b in blocks[::2] + blocks[1::2]:
        mem.free(b)
    assert mem.free_bytes == mem.size and mem.allocations == 0
    assert mem.alloc(mem.size, PAGE) == mem.iova_base  # one range again, not fragments


def test_fragmentation_reported_when_no_single_range_fits(mem):
    a = mem.alloc(mem.size // 2)
    mem.alloc(16)
    mem.free(a)
    assert mem.free_bytes > mem.size // 2
    with pytest.raises(GuestMemoryFull):
        mem.alloc(mem.size // 2 + 16)


def test_free_errors(mem):
    a = mem.alloc(64)
    with pytest.raises(GuestMemoryError, match="not an allocation"):
        mem.free(a + 16)
    mem.free(a)
    with pytest.raises(GuestMemoryError):
        mem.free(a)  # double free


def test_read_write_view_and_zero(mem):
    a = mem.alloc(32)
    mem.write(a, b"hello world")
    assert mem.read(a, 5) == b"hello"
    v = mem.view(a + 6, 5)
    v[:] = b"WORLD"
    v.release()
    assert mem.read(a, 11) == b"hello WORLD"
    mem.zero(a, 6)
    assert mem.read(a, 11) == bytes(6) + b"WORLD"


def test_memfd_is_what_another_mapping_sees(mem):
    """The device maps the same fd: bytes we write must be in the file at iova - iova_base."""
    a = mem.alloc(16, 16)
    mem.write(a, b"\x01\x02\x03\x04")
    assert os.pread(mem.fd, 4, a - mem.iova_base) == b"\x01\x02\x03\x04"
    os.pwrite(mem.fd, b"\xAA\xBB", a - mem.iova_base + 8)
    assert mem.read(a + 8, 2) == b"\xAA\xBB"


@pytest.mark.parametrize("delta,n", [(-1, 1), (0, (1 << 20) + 1), ((1 << 20) - 1, 2), (0, -1)])
def test_out_of_bounds_access_refused(mem, delta, n):
    with pytest.raises(GuestMemoryError, match="outside guest memory"):
        mem.read(mem.iova_base + delta, n)


def test_close_releases_fd():
    m = GuestMemory(PAGE)
    fd = m.fd
    m.close()
    with pytest.raises(OSError):
        os.fstat(fd)
    m.close()  # idempotent


def test_freed_block_of_same_size_is_reused(mem):
    a = mem.alloc(100, 16)
    mem.alloc(100, 16)
    mem.free(a)
    assert mem.alloc(100, 16) == a            # from the free cache
    b = mem.alloc(100, 16)
    mem.free(b)
    assert mem.alloc(100, 4096) % 4096 == 0   # cached block not aligned enough: not reused blindly


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 9000), st.sampled_from([1, 8, 16, 64, 4096])),
                max_size=80), st.sampled_from([0, 3, 1024]))
def test_allocator_invariants(ops, cache_entries):
    """Random alloc/free: allocations never overlap, stay in bounds, and free + used == size
    (with no free cache, a tiny one that overflows, and the default one)."""
    with mock.patch.object(memory_mod, "FREE_CACHE_ENTRIES", cache_entries), GuestMemory(64 * PAGE) as m:
        live: dict[int, int] = {}
        for do_free, size, align in ops:
            if do_free and live:
                addr = sorted(live)[size % len(live)]
                m.free(addr)
                del live[addr]
                continue
            try:
                addr = m.alloc(size, align)
            except GuestMemoryFull:
                continue
            assert addr % align == 0
            assert m.iova_base <= addr and addr + size <= m.iova_end
            live[addr] = size
            spans = sorted(live.items())
            for (a, sa), (b, _sb) in zip(spans, spans[1:]):
                assert a + sa <= b, "allocations overlap"
            assert m.free_bytes + sum(live.values()) == m.size  # alignment padding stays free
        for addr in list(live):
            m.free(addr)
        assert m.free_bytes == m.size
        assert m.alloc(m.size, PAGE) == m.iova_base  # everything merges back into one range


def test_full_free_cache_is_merged_back_not_left_to_shred_the_free_list():
    """Freed blocks of sizes no longer used must not pin the free list in ~FREE_CACHE_ENTRIES pieces
    (every allocation of a new size then first-fit-scanned them all: a 6x slowdown in the benchmark)."""
    from vfu_virtio.client.memory import FREE_CACHE_ENTRIES
    with GuestMemory(64 << 20) as mem:
        for size in range(16, 16 * (FREE_CACHE_ENTRIES + 200), 16):  # many sizes, each freed once
            blocks = [mem.alloc(size) for _ in range(2)]
            for b in blocks:
                mem.free(b)
        # the cache was merged back when it filled up, so it holds recent sizes, not a full stale set
        assert mem._cached < FREE_CACHE_ENTRIES
        a = mem.alloc(12345)
        mem.free(a)
        assert mem.alloc(12345) == a  # and a freshly freed size is served from the cache again
