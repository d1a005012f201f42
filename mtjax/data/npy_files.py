"""``.npy`` files read through the path layer (``mtjax.fileio``): on a local disk or in a bucket.

The dataset readers of folders of ``.npy`` arrays (NYUv2 in the MTAN layout, MTPSL's Cityscapes)
check every file's header when a split is opened and read an example's bytes when the pipeline
asks for it. Headers are parsed from the first bytes of each file (``numpy.lib.format``), by
several threads, so that a bucket's per-request latency is paid in parallel. Data are read as raw
bytes at the recorded offset, not with ``np.load``: ``np.load`` parses headers with
``ast.literal_eval``, which fails spuriously under concurrent threads in CPython 3.11 ("AST
constructor recursion depth mismatch", python/cpython gh-106905), and tf.data calls ``load`` from
parallel threads.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
from etils import epath

_T = TypeVar("_T")
HEADER_THREADS = 16


@dataclasses.dataclass(frozen=True)
class Header:
  """A ``.npy`` header: shape, dtype, memory order ("C" or "F") and the data's byte offset."""

  shape: tuple[int, ...]
  dtype: np.dtype
  order: str
  offset: int

  @property
  def nbytes(self) -> int:
    return math.prod(self.shape) * self.dtype.itemsize


def read_header(path: epath.Path, what: str, layout: str) -> Header:
  """The header of the ``.npy`` at ``path`` (its first bytes and its size only), checked: no
  object dtype, and at least as many data bytes as the header's shape and dtype need.

  Args:
    what: the dataset's name, for the message. layout: the expected layout, for the message.

  Raises:
    ValueError: not a readable .npy, an object array, or a truncated file (names ``path``, the
      reason and ``layout``).
  """
  try:
    with path.open("rb") as f:
      version = np.lib.format.read_magic(f)
      if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(f)
      else:
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(f)
      offset = f.tell()
      f.seek(0, 2)  # The end: the file's size.
      size = f.tell()
    order = "F" if fortran_order and len(shape) > 1 else "C"
    header = Header(tuple(int(d) for d in shape), np.dtype(dtype), order, offset)
    if header.dtype.hasobject:
      raise ValueError("it holds Python objects, which need pickle")
    if size - offset < header.nbytes:
      raise ValueError(
          f"truncated: {size - offset} data bytes, its header's {header.shape} {header.dtype} "
          f"need {header.nbytes}"
      )
  except (OSError, ValueError) as e:
    raise ValueError(
        f"{what} file {path} is not a readable .npy array ({e}); expected {layout}."
    ) from e
  return header


def map_in_threads(fn: Callable[..., _T], jobs: Sequence[tuple]) -> list[_T]:
  """``[fn(*job) for job in jobs]`` on ``HEADER_THREADS`` threads (the first error is raised)."""
  with concurrent.futures.ThreadPoolExecutor(HEADER_THREADS) as pool:
    return list(pool.map(lambda job: fn(*job), jobs))


def read_data(path: epath.Path, header: Header, what: str) -> np.ndarray:
  """The array of the ``.npy`` at ``path`` whose header is ``header`` (a read-only view of the
  bytes read).

  Raises:
    ValueError: the file holds fewer bytes than its header promises (truncated; named).
  """
  with path.open("rb") as f:
    f.seek(header.offset)
    data = f.read(header.nbytes)
  if len(data) != header.nbytes:
    size = len(data) // header.dtype.itemsize
    raise ValueError(
        f"{what} file {path} holds {size} values, fewer than its header's {header.shape}; it is "
        "truncated."
    )
  return np.frombuffer(data, header.dtype).reshape(header.shape, order=header.order)
