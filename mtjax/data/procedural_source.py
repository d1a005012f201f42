"""Pipeline source over the ``procedural_rooms`` TFDS dataset (``mtjax.data.builders``).

Implements the source protocol of ``mtjax.data.pipeline`` (``num_examples``, ``tasks``,
``image_shape``, ``load``), building the dataset into ``data_dir`` on first use (no download).
Always the builder's latest version (1.1.0, with ``edge``): a 1.0.0 dataset prepared earlier is
left as it is and 1.1.0 is generated beside it, once (its other features are bit-identical).

**A bucket ``data_dir``** (``gs://...``). Random access reads ArrayRecord files, whose reader and
writer open local files only, so a bucket holds the prepared dataset and every host reads a local
mirror of it, ``LOCAL_MIRROR/{bucket path}`` (``prepared_builder``): a host whose mirror is
missing copies the bucket's dataset there (into a temporary folder renamed into place, so a killed
copy is never taken for a dataset); when the bucket has none either, the host generates the
dataset locally (as for a local ``data_dir``) and uploads it, ``dataset_info.json`` last, which
is what marks a bucket's dataset complete. In a multi-host run process 0 prepares first
(``mtjax.data.sources``), so the others download instead of generating.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds
from absl import logging
from etils import epath

from mtjax import fileio
from mtjax.data import files
from mtjax.data.builders import procedural_rooms

# Where a host mirrors a bucket's prepared dataset (module docstring).
LOCAL_MIRROR = os.path.join(os.path.expanduser("~"), ".cache", "mtjax", "tfds")
# TFDS writes this last when it prepares a dataset; a copy writes it last too.
_INFO = "dataset_info.json"

# Every ground truth ``load`` returns, in the dataset's task order.
TASKS = ("semseg", "depth", "normal", "edge")
# ``source.tasks`` unless a run asks for ``edge``. The pipeline loads every task of
# ``source.tasks`` and the label settings are drawn over them (``resolve_label_mask``'s
# ``dataset_tasks``), so runs without edge keep dataset 1.0.0's label masks and batches.
TASKS_WITHOUT_EDGE = TASKS[:3]


class ProceduralRoomsSource:
  """One split of ``procedural_rooms`` read by random access (``builder.as_data_source``).

  Args:
    split: ``"train"``, ``"validation"`` or ``"test"``.
    data_dir: TFDS data directory (None: TFDS's default, ~/tensorflow_datasets); the dataset is
      generated there (array_record) if missing.
    config_name: builder config, ``"default"`` (1000/200/200 at 96x128) or ``"tiny"``.
    tasks: the tasks a run trains (``config.tasks``: any of ``TASKS``); only whether it has
      ``edge`` matters (see ``tasks`` below). None: no edge.

  Attributes:
    num_examples: examples in the split. image_shape: ``(H, W)``. tasks: the dataset's tasks
      as the pipeline and the label settings see them: ``TASKS`` if ``tasks`` has ``edge``,
      else ``TASKS_WITHOUT_EDGE`` (label masks and batches exactly as before edge existed).

  Raises:
    ValueError: a task not in ``TASKS``; unknown config or split (from TFDS).
  """

  def __init__(
      self,
      split: str,
      *,
      data_dir,
      config_name: str = "default",
      tasks: Sequence[str] | None = None,
  ):
    unknown = [t for t in tasks or () if t not in TASKS]
    if unknown:
      raise ValueError(f"procedural_rooms has the tasks {TASKS}; unknown: {unknown}")
    builder = prepared_builder(data_dir, config_name)
    self.split = split
    self._data = builder.as_data_source(split=split)
    self.num_examples = len(self._data)
    self.tasks = TASKS if "edge" in (tasks or ()) else TASKS_WITHOUT_EDGE
    self.image_shape = (builder.builder_config.height, builder.builder_config.width)
    # Serialises record reads and decoding: thread-safety of the TFDS data source (and of the
    # image decoder behind it) is not documented, and examples are small.
    self._lock = threading.Lock()

  has_instances = True  # ``load`` returns ``instance`` ids (config.regions.source="instance").

  def example_id(self, index: int) -> str:
    """The stable id of example ``index`` (its TFDS ``id``, e.g. ``"train_0000042"``)."""
    record_id = self._record(index)["id"]
    return record_id.decode() if isinstance(record_id, bytes) else str(record_id)

  def _record(self, index: int):
    index = files.check_index(index, self.num_examples, f"procedural_rooms {self.split}")
    with self._lock:
      return self._data[index]

  def load(self, index: int) -> dict[str, np.ndarray]:
    """Example ``index``; thread-safe (tf.data calls it from parallel threads).

    Returns:
      dict: ``image`` float32 [H, W, 3] in [0, 1]; ``semseg`` int32 [H, W] (0..12, -1 ignore);
      ``depth`` float32 [H, W, 1] z-depth metres (0 invalid); ``normal`` float32 [H, W, 3]
      unit camera-frame (x right, y down, z forward; all-zero invalid); ``edge`` float32
      [H, W, 1] (1 boundary, 0 not, 255 ignore; ``procedural.edge_map``); ``instance`` int32
      [H, W] (-1 none). Conventions: ``mtjax.data.procedural``.

    Raises:
      IndexError: ``index`` outside [0, num_examples).
    """
    ex = self._record(index)
    return {
        "image": np.asarray(ex["image"], np.float32) / 255.0,
        "semseg": np.asarray(ex["semantic"], np.int32),
        "depth": np.asarray(ex["depth"], np.float32),
        "normal": np.asarray(ex["normal"], np.float32),
        "edge": np.asarray(ex["edge"], np.float32),
        "instance": np.asarray(ex["instance"], np.int32),
    }


def prepared_builder(data_dir, config_name: str = "default") -> procedural_rooms.ProceduralRooms:
  """The ``procedural_rooms/{config_name}`` builder (array_record), its dataset prepared and
  readable by random access: generated into ``data_dir`` if missing; for a bucket ``data_dir``
  the builder of the host's local mirror (module docstring).

  Args:
    data_dir: a local TFDS data directory, None (TFDS's default), or a gs:// URL.
    config_name: ``"default"`` or ``"tiny"``.

  Raises:
    ValueError: an unknown config (from TFDS); OSError: the bucket or the mirror unwritable.
  """
  remote = None
  if data_dir is not None and fileio.is_url(data_dir):
    remote = fileio.as_path(data_dir)
    data_dir = os.path.join(LOCAL_MIRROR, os.fspath(data_dir).split("://", 1)[1])
  builder = procedural_rooms.ProceduralRooms(
      data_dir=None if data_dir is None else str(data_dir),
      config=config_name,
      file_format="array_record",
  )
  bucket_copy = None
  if remote is not None:
    bucket_copy = remote / epath.Path(builder.data_dir).relative_to(data_dir)
  if not builder.is_prepared():
    if bucket_copy is not None and (bucket_copy / _INFO).exists():
      logging.info(
          "procedural_rooms: copying %s to the local mirror %s", bucket_copy, builder.data_dir
      )
      _copy_into_place(bucket_copy, epath.Path(builder.data_dir))
      # A builder reads its dataset_info on construction: one that sees the copy.
      builder = procedural_rooms.ProceduralRooms(
          data_dir=data_dir, config=config_name, file_format="array_record"
      )
    else:
      _log_other_versions(builder)
      # Rooms are generated, not downloaded: the builder logs progress in rooms instead of TFDS's
      # download-oriented progress bars.
      tfds.display_progress_bar(False)
      builder.download_and_prepare()
  if bucket_copy is not None and not (bucket_copy / _INFO).exists():
    logging.info("procedural_rooms: uploading %s to %s", builder.data_dir, bucket_copy)
    _upload(epath.Path(builder.data_dir), bucket_copy)
  return builder


def _files_info_last(folder: epath.Path) -> list[epath.Path]:
  """The files of a prepared dataset folder (not recursive), ``dataset_info.json`` last."""
  names = sorted(p.name for p in folder.iterdir())
  if _INFO not in names:
    raise FileNotFoundError(f"{folder} has no {_INFO}: not a prepared TFDS dataset")
  return [folder / n for n in names if n != _INFO] + [folder / _INFO]


def _copy_into_place(source: epath.Path, target: epath.Path) -> None:
  """Copies the dataset folder ``source`` (a bucket) to the local ``target``, through a
  temporary sibling renamed into place."""
  staging = target.parent / f".{target.name}.incomplete-{uuid.uuid4().hex}"
  staging.mkdir(parents=True)
  for file in _files_info_last(source):
    (staging / file.name).write_bytes(file.read_bytes())
  try:
    staging.rename(target)
  except OSError:
    if not (target / _INFO).exists():
      raise
    staging.rmtree()  # Another process of this host put its copy in place first.


def _upload(source: epath.Path, target: epath.Path) -> None:
  """Uploads the local dataset folder ``source`` to ``target`` in a bucket, ``dataset_info.json``
  last (each object is whole once uploaded; that file's presence marks the copy complete)."""
  target.mkdir(parents=True, exist_ok=True)
  for file in _files_info_last(source):
    (target / file.name).write_bytes(file.read_bytes())


def _log_other_versions(builder) -> None:
  """Says so when the version about to be generated replaces one prepared earlier (1.0.0)."""
  others = [
      p.name
      for p in (builder.data_path.parent.iterdir() if builder.data_path.parent.exists() else ())
      if p.name != str(builder.version) and (p / "dataset_info.json").exists()
  ]
  if others:
    logging.info(
        "procedural_rooms/%s: %s has version(s) %s; generating %s (adds edge, the other features "
        "are identical) beside them, which may be deleted",
        builder.builder_config.name,
        builder.data_path.parent,
        ", ".join(sorted(others)),
        builder.version,
    )
