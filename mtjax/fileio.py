"""The one path layer of mtjax: every path a user gives (workdir, data, regions, weights) may be a
local path or a bucket URL (``gs://bucket/...``; any scheme ``etils.epath`` serves).

**Why ``etils.epath``.** It is what Orbax (checkpoints), TFDS (datasets) and CLU (metric writers)
already use, so one layer serves every file a run touches: a pathlib-like ``Path`` whose ``gs://``
backend is TensorFlow's ``tf.io.gfile`` when TensorFlow is installed and ``fsspec`` / ``gcsfs``
otherwise (``pip install gcsfs``). TFDS, tf.data and TensorBoard's event writer go through
``tf.io.gfile`` too, so with TensorFlow installed every gs:// byte of a run takes one client, the one
``tests/test_gcs.py`` runs against a local emulator. ``mtjax`` and ``tools/`` open user paths through
here (or through ``epath.Path`` directly), never with ``os.path`` / ``open`` / ``np.load(path)``.

``write_atomic`` leaves a reader the old complete file or the new one, never a partial one: on a
local disk it writes a temporary ``.NAME.*.tmp`` beside the target and renames it (a killed writer
leaves at most that temporary); in a bucket one object upload is already atomic (an object becomes
visible, whole, when its upload completes). ``read_versioned_json`` reads a JSON object carrying
``"format": FORMAT`` and refuses anything else.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from etils import epath

__all__ = [
    "as_path",
    "is_url",
    "read_bytes",
    "read_text",
    "read_versioned_json",
    "write_atomic",
]


PathLike = str | os.PathLike


def is_url(path: PathLike) -> bool:
  """True for a URL with a scheme (``gs://...``, ``s3://...``), False for a local path."""
  return "://" in os.fspath(path)


def as_path(path: PathLike) -> epath.Path:
  """``path`` as an ``epath.Path``; a local path made absolute (Orbax requires absolute paths),
  a URL kept as it is.

  Raises:
    ValueError: an empty path.
  """
  text = os.fspath(path)
  if not text:
    raise ValueError("expected a local path or a gs:// URL, got an empty path")
  return epath.Path(text if is_url(text) else os.path.abspath(text))


def write_atomic(file: PathLike, data: str | bytes) -> None:
  """Writes ``data`` (text as UTF-8, or bytes) to ``file`` atomically (module docstring).

  Local files get mode 0644; the directory is created if needed; the temporary is flushed to disk
  before the rename and removed on any error. In a bucket, one upload of the whole object.
  """
  payload = data.encode() if isinstance(data, str) else data
  target = as_path(file)
  if is_url(file):
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(payload)
    return
  directory = os.fspath(target.parent)
  os.makedirs(directory, exist_ok=True)
  fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
  try:
    os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the file from other users.
    with os.fdopen(fd, "wb") as f:
      f.write(payload)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, os.fspath(target))
  except BaseException:
    os.unlink(tmp)
    raise


def read_versioned_json(file: PathLike, fmt: str, what: str) -> dict[str, Any]:
  """The JSON object in ``file`` (a local path or URL), whose ``"format"`` must be ``fmt``.

  Raises:
    FileNotFoundError: ``file`` does not exist.
    ValueError: not valid JSON, not an object, or another format; the message names ``file``,
      what was found and ``what`` was expected.
  """
  text = read_text(file)
  try:
    record = json.loads(text)
  except json.JSONDecodeError as e:
    raise ValueError(f"{file} is not valid JSON ({e}); expected {what} of format {fmt!r}") from e
  if not isinstance(record, dict) or record.get("format") != fmt:
    found = record.get("format") if isinstance(record, dict) else type(record).__name__
    raise ValueError(f"{file} has format {found!r}; expected {what} of format {fmt!r}")
  return record


def read_text(file: PathLike) -> str:
  """The UTF-8 text of ``file`` (a local path or URL).

  Raises:
    FileNotFoundError: no such file (named).
  """
  return read_bytes(file).decode()


def read_bytes(file: PathLike) -> bytes:
  """The bytes of ``file`` (a local path or URL).

  Raises:
    FileNotFoundError: no such file (named).
  """
  path = as_path(file)
  if not path.exists():
    raise FileNotFoundError(f"{file} not found")
  return path.read_bytes()
