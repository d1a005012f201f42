"""Dataset files read through the path layer (``mtjax.fileio``): on a local disk or in a bucket.

The dataset readers open every file through here (or ``etils.epath`` directly), never by a local
path, so that ``dataset.data_dir`` may be a ``gs://`` URL:

* **folder listings** (``list_names``): one listing per folder, not one existence check per file;
* **images** (``open_image``): PIL on a stream of the file, which reads only the first bytes when
  only the header (format, mode, size) is asked for; ``whole=True`` reads the file in one request
  first, for decoding;
* **MATLAB files** (``whosmat``, ``loadmat``): ``scipy.io`` on a stream (variable headers) or on
  the whole file read in one request (data);
* **``.npy`` arrays** (``read_header``, ``read_data``): headers parsed from the first bytes of each
  file (``numpy.lib.format``), data read as raw bytes at the recorded offset, not with
  ``np.load``: ``np.load`` parses headers with ``ast.literal_eval``, which fails spuriously under
  concurrent threads in CPython 3.11 ("AST constructor recursion depth mismatch",
  python/cpython gh-106905), and tf.data calls the readers' ``load`` from parallel threads.

``map_in_threads`` runs per-file header checks on several threads, so that a bucket's per-request
latency is paid in parallel when a split is opened; the ``.npy`` headers' bytes are read
concurrently and parsed one at a time (numpy parses them with ``ast.literal_eval``, not
thread-safe in CPython 3.11).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import io
import math
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import scipy.io
from etils import epath
from PIL import Image

_T = TypeVar("_T")
HEADER_THREADS = 16
# numpy parses a .npy header with ``ast.literal_eval``, which fails spuriously when threads run it
# at once in CPython 3.11 ("AST constructor recursion depth mismatch", python/cpython gh-106905):
# ``read_header`` reads the bytes concurrently and parses them under this lock.
_HEADER_PARSE_LOCK = threading.Lock()


def list_names(folder: epath.Path) -> set[str]:
  """The names of the entries of ``folder`` (files and folders, not recursive).

  Raises:
    FileNotFoundError / NotADirectoryError: ``folder`` is not a folder.
  """
  return {entry.name for entry in folder.iterdir()}


@contextlib.contextmanager
def open_image(path: epath.Path, *, whole: bool = False) -> Iterator[Image.Image]:
  """``PIL.Image.open`` of the file at ``path``, closed on exit.

  Args:
    whole: False streams the file (a header costs its first bytes; for format / mode / size
      checks); True reads the whole file in one request first (for decoding).

  Raises:
    OSError, ValueError, PIL.Image.DecompressionBombError: as ``PIL.Image.open`` (an unreadable
      or missing file); the readers name the path and their layout.
  """
  with contextlib.ExitStack() as stack:
    stream = io.BytesIO(path.read_bytes()) if whole else stack.enter_context(path.open("rb"))
    yield stack.enter_context(Image.open(stream))


def whosmat(path: epath.Path) -> list[tuple[str, tuple[int, ...], str]]:
  """``scipy.io.whosmat`` of the MATLAB v5 file at ``path`` (name, shape, class per variable),
  read as a stream (variable headers only).

  Raises:
    as ``scipy.io.whosmat`` (several types for a corrupt or v7.3 file), OSError for a missing one.
  """
  with path.open("rb") as f:
    return scipy.io.whosmat(f)


def loadmat(path: epath.Path, **kwargs: Any) -> dict[str, Any]:
  """``scipy.io.loadmat(file, **kwargs)`` of the MATLAB v5 file at ``path``, read whole first.

  Raises:
    as ``scipy.io.loadmat`` (several types for a corrupt file), OSError for a missing one.
  """
  return scipy.io.loadmat(io.BytesIO(path.read_bytes()), **kwargs)


def check_index(index: Any, num_examples: int, what: str) -> int:
  """``int(index)`` if it lies in [0, num_examples); ``what`` names the split ("NYUv2 train").

  Raises:
    IndexError: ``index`` outside [0, num_examples) (naming ``what``).
  """
  index = int(index)
  if not 0 <= index < num_examples:
    raise IndexError(f"{what} index {index} outside [0, {num_examples}).")
  return index


def decode_image(path: epath.Path, mode: str | None, what: str, layout: str) -> np.ndarray:
  """The pixels of the image file at ``path`` (read whole), converted to PIL ``mode`` if given.

  Returns:
    ``np.asarray`` of the PIL image: uint8 [h, w] or [h, w, c] for 8-bit modes (a "P" png's palette
    indices when ``mode`` is None), int32 for "I", uint16 for "I;16".

  Raises:
    ValueError: the file is missing or not a readable image, naming ``what`` (the dataset), the
      path and ``layout`` (what the dataset's folder should hold).
  """
  try:
    with open_image(path, whole=True) as im:
      return np.asarray(im.convert(mode) if mode else im)
  except (OSError, ValueError, Image.DecompressionBombError) as e:
    raise ValueError(f"{what} file {path} is not a readable image ({e}); expected {layout}.") from e


def mat_variable(path: epath.Path, variable: str, what: str, layout: str) -> Any:
  """Variable ``variable`` of the MATLAB v5 file at ``path`` (``loadmat``, that variable only).

  Raises:
    ValueError: the file is missing, corrupt or lacks the variable, naming ``what`` (the dataset),
      the path and ``layout``.
  """
  try:
    return loadmat(path, variable_names=[variable])[variable]
  except Exception as e:  # scipy raises several types for a corrupt file.
    raise ValueError(
        f"{what} file {path} has no readable variable {variable!r} ({e!r}); expected {layout}."
    ) from e


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
    with path.open("rb") as f:  # The bytes up to the data, read concurrently with other files.
      prefix = f.read(12)  # Magic (6), version (2), header length (2 in v1, 4 in v2 / v3).
      if len(prefix) < 10 or prefix[:6] != b"\x93NUMPY":
        raise ValueError("it does not start with the .npy magic string")
      length_bytes = 2 if prefix[6] == 1 else 4
      offset = 8 + length_bytes + int.from_bytes(prefix[8 : 8 + length_bytes], "little")
      raw = prefix + f.read(max(offset - len(prefix), 0))
      f.seek(0, 2)  # The end: the file's size.
      size = f.tell()
    with _HEADER_PARSE_LOCK:  # One at a time: see _HEADER_PARSE_LOCK.
      buffer = io.BytesIO(raw)
      version = np.lib.format.read_magic(buffer)
      if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(buffer)
      else:
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(buffer)
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
