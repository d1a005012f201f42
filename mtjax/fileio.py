"""Small file helpers shared by the writers of run records and region maps.

``write_atomic`` writes through a temporary file in the target's directory and ``os.replace``, so a
reader sees the old complete file or the new one, never a partial one (a killed writer leaves at
most a ``.NAME.*.tmp`` behind, never a truncated ``NAME``). ``read_versioned_json`` reads a JSON
object carrying ``"format": FORMAT`` and refuses anything else.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any


def write_atomic(file: str | os.PathLike, data: str | bytes) -> None:
  """Writes ``data`` (text as UTF-8, or bytes) to ``file`` atomically, mode 0644.

  The directory is created if needed; the temporary is flushed to disk before the rename and
  removed on any error.
  """
  file = os.fspath(file)
  directory = os.path.dirname(os.path.abspath(file))
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(file)}.", suffix=".tmp", dir=directory)
  try:
    os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the file from other users.
    with os.fdopen(fd, "wb") as f:
      f.write(data.encode() if isinstance(data, str) else data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, file)
  except BaseException:
    os.unlink(tmp)
    raise


def read_versioned_json(file: str | os.PathLike, fmt: str, what: str) -> dict[str, Any]:
  """The JSON object in ``file``, whose ``"format"`` must be ``fmt``.

  Raises:
    FileNotFoundError: ``file`` does not exist.
    ValueError: not valid JSON, not an object, or another format; the message names ``file``,
      what was found and ``what`` was expected.
  """
  with open(file) as f:
    text = f.read()
  try:
    record = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"{file} is not valid JSON ({e}); expected {what} of format {fmt!r}") from e
  if not isinstance(record, dict) or record.get("format") != fmt:
    found = record.get("format") if isinstance(record, dict) else type(record).__name__
    raise ValueError(f"{file} has format {found!r}; expected {what} of format {fmt!r}")
  return record
