"""tools/bench.py's memory measures: the resident size now, and handing the heap's
freed pages back to the OS before a step is timed."""

import ctypes
import ctypes.util
import re
import sys

import numpy as np
import pytest

from tools import bench


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_rss_follows_an_allocation():
  before = bench.rss_gib()
  block = np.ones(256 * 2**20 // 8)  # 256 MiB, every page written.
  during = bench.rss_gib()
  assert 0.2 < during - before < 0.4, (before, during)
  assert bench.peak_rss_gib() >= during - 0.01
  del block


@pytest.mark.skipif(
    not hasattr(ctypes.CDLL(ctypes.util.find_library("c")), "malloc_trim"),
    reason="needs glibc's malloc_trim",
)
def test_release_freed_memory_returns_freed_heap_pages():
  libc = ctypes.CDLL(ctypes.util.find_library("c"))
  libc.malloc.restype = ctypes.c_void_p
  libc.free.argtypes = [ctypes.c_void_p]
  libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
  # 4,096 blocks of 64 KiB (below glibc's mmap threshold: on the heap), written, then freed but
  # the last, which pins the heap's top: glibc keeps the freed 256 MiB resident until trimmed.
  blocks = [libc.malloc(64 * 1024) for _ in range(4096)]
  for block in blocks:
    libc.memset(block, 1, 64 * 1024)
  for block in blocks[:-1]:
    libc.free(block)
  held = bench.rss_gib()
  line = bench.release_freed_memory()
  libc.free(blocks[-1])
  before, after = map(
      float, re.fullmatch(r"malloc_trim\(0\): resident (\S+) -> (\S+) GiB.*", line).groups()
  )
  assert abs(before - held) < 0.05, (line, held)
  assert before - after > 0.15, line
