"""The images a region export reads: one split of a dataset, by stable example id
(``mtjax.data.region_export`` runs the export over them).

Sources (one split each; ``example_ids`` are the stable ids the pipeline reads maps by):

* ``nyuv2_images(data_dir, split)``: the MTAN layout, ``{data_dir}/{split}/image/{i}.npy``
  (float in [0, 1], [H, W, 3]); ids ``"0"``, ``"1"``, ...
* ``tfds_images(name, split, data_dir)``: a TFDS dataset with ``image`` and ``id`` features, read
  by random access (``as_data_source``; array_record). ``procedural_rooms[/config]`` is generated
  on first use.
* ``folder_images(directory)``: every ``.png .jpg .jpeg .bmp .tif .tiff .webp`` file of a
  folder (not recursive), RGB; ids the file stems.
* ``source_images(source, dataset, data_dir, split)``: the images a pipeline source
  (``mtjax.data.sources.create_source``: NYUD-MT, PASCAL-Context, Cityscapes, ...) gives the
  training pipeline before augmentation, at its ``image_shape`` (the canvas of the
  variable-size datasets); ids ``source.example_id(i)``.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from mtjax import fileio
from mtjax.data import files

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


class ExportError(RuntimeError):
  """A region export that cannot proceed; the message names what was wrong and what was expected."""


class BadImageError(ExportError):
  """An image that cannot be read (``export(skip_bad=True)`` skips it and lists it at the end)."""


@dataclasses.dataclass(frozen=True)
class Images:
  """One split of images to export.

  Attributes:
    source: provenance for the manifest, e.g. ``{"dataset": "nyuv2", "data_dir": ...}``.
    split: the split folder the maps go to (``REGION_DIR/{split}/``).
    example_ids: the stable id of each example, in dataset order.
    describe: example index → where it is read from (a path, for error messages).
    read: example index → uint8 [H, W, 3] RGB; raises ``BadImageError`` naming the example.
  """

  source: dict[str, Any]
  split: str
  example_ids: Sequence[str]
  describe: Callable[[int], str]
  read: Callable[[int], np.ndarray]


def _to_uint8(array: np.ndarray, example_id: str, where: str, expected: str) -> np.ndarray:
  """Float RGB in [0, 1] or uint8 RGB, [H, W, 3] → uint8 [H, W, 3]."""
  array = np.asarray(array)
  if array.ndim != 3 or array.shape[-1] != 3 or array.shape[0] < 1 or array.shape[1] < 1:
    raise BadImageError(
        f"image of example {example_id!r} ({where}) has shape {array.shape}; expected {expected}"
    )
  if array.dtype == np.uint8:
    return array
  if not np.issubdtype(array.dtype, np.floating) or not np.isfinite(array).all():
    raise BadImageError(
        f"image of example {example_id!r} ({where}) is {array.dtype} with non-finite or "
        f"non-float values; expected {expected}"
    )
  return np.round(np.clip(array, 0.0, 1.0) * 255.0).astype(np.uint8)


def nyuv2_images(data_dir: str | os.PathLike, split: str) -> Images:
  """The images of NYUv2 in the MTAN layout, ``{data_dir}/{split}/image/{i}.npy`` (``data_dir`` a
  local path or a gs:// URL).

  Only the image folder is read (labels are not needed to export regions), one file per call.

  Raises:
    ExportError: the image folder is missing, empty, or its files are not ``0.npy .. N-1.npy``.
      ``read`` raises ``BadImageError`` for an unreadable file or one that is not float
      [H, W, 3] in [0, 1] (or uint8).
  """
  root = fileio.as_path(data_dir)
  folder = root / split / "image"
  layout = f"{root}/{split}/image/{{0..N-1}}.npy, float32 [H, W, 3] in [0, 1] (MTAN)"
  if not folder.is_dir():
    raise ExportError(f"NYUv2 image folder {folder} does not exist; expected {layout}")
  names = [n for n in files.list_names(folder) if n.endswith(".npy")]
  indices = sorted(int(m.group(1)) for m in map(re.compile(r"(\d+)\.npy").fullmatch, names) if m)
  if not names or len(indices) != len(names) or indices != list(range(len(names))):
    odd = sorted(set(names) - {f"{i}.npy" for i in range(len(names))})[:3]
    raise ExportError(
        f"NYUv2 image folder {folder} holds {len(names)} .npy files, not exactly "
        f"0.npy..N-1.npy (unexpected: {odd}); expected {layout}"
    )

  def describe(index: int) -> str:
    return str(folder / f"{index}.npy")

  def read(index: int) -> np.ndarray:
    try:
      array = np.load(io.BytesIO((folder / f"{index}.npy").read_bytes()), allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
      raise BadImageError(
          f"image of example '{index}' ({describe(index)}) cannot be read ({e}); expected {layout}"
      ) from e
    return _to_uint8(array, str(index), describe(index), layout)

  return Images(
      source={"dataset": "nyuv2", "data_dir": os.fspath(root), "split": split},
      split=split,
      example_ids=[str(i) for i in range(len(names))],
      describe=describe,
      read=read,
  )


def tfds_images(name: str, split: str, data_dir: str | os.PathLike | None = None) -> Images:
  """The images of a TFDS dataset ``name`` (``"dataset"`` or ``"dataset/config"``), by its ``id``
  and ``image`` features, read by random access (``builder.as_data_source``, array_record).

  ``procedural_rooms`` is generated into ``data_dir`` if missing (no download); other datasets
  must have been prepared (``tfds build``).

  Raises:
    ExportError: an unknown dataset, one not prepared, a split it lacks, or no ``id`` / ``image``
      feature. ``read`` raises ``BadImageError`` for a record whose image cannot be decoded.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  from mtjax.data import procedural_source  # pylint: disable=g-import-not-at-top

  data_dir = None if data_dir in (None, "") else str(data_dir)
  dataset, _, config_name = name.partition("/")
  try:
    if dataset == "procedural_rooms":  # Generated if missing; a bucket's through a local mirror.
      builder = procedural_source.prepared_builder(data_dir, config_name or "default")
    else:
      builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # TFDS raises its own DatasetNotFoundError and friends.
    raise ExportError(f"TFDS dataset {name!r} is not known to TFDS ({e})") from e
  if not builder.is_prepared():
    raise ExportError(
        f"TFDS dataset {name!r} is not prepared in {builder.data_dir}; run `tfds build {name}` "
        "first (nothing is downloaded here)"
    )
  missing = {"id", "image"} - set(builder.info.features.keys())
  if missing:
    raise ExportError(
        f"TFDS dataset {name!r} has no feature(s) {sorted(missing)}; the exporter keys maps by "
        f"the 'id' feature and reads 'image' (features: {sorted(builder.info.features.keys())})"
    )
  if split not in builder.info.splits:
    raise ExportError(f"TFDS dataset {name!r} has no split {split!r} ({list(builder.info.splits)})")
  try:
    data = builder.as_data_source(split=split)
  except Exception as e:
    raise ExportError(
        f"TFDS dataset {name!r} cannot be read by random access ({e}); prepare it with "
        "file_format='array_record'"
    ) from e

  def describe(index: int) -> str:
    return f"tfds {name} {split}[{index}] in {builder.data_dir}"

  records_ids = []
  for index in range(len(data)):
    record_id = data[index]["id"]
    records_ids.append(record_id.decode() if isinstance(record_id, bytes) else str(record_id))

  def read(index: int) -> np.ndarray:
    try:
      image = data[index]["image"]
    except Exception as e:
      raise BadImageError(
          f"image of example {records_ids[index]!r} ({describe(index)}) cannot be read ({e})"
      ) from e
    return _to_uint8(image, records_ids[index], describe(index), "uint8 [H, W, 3]")

  return Images(
      source={"dataset": name, "data_dir": str(builder.data_dir), "split": split},
      split=split,
      example_ids=records_ids,
      describe=describe,
      read=read,
  )


def folder_images(directory: str | os.PathLike, split: str = "train") -> Images:
  """The images of a folder (``IMAGE_SUFFIXES``, not recursive), sorted by name; ids = stems.
  ``directory`` is a local path or a gs:// URL.

  Raises:
    ExportError: the folder is missing, holds no image, or two files share a stem.
      ``read`` raises ``BadImageError`` for a file PIL cannot decode.
  """
  folder = fileio.as_path(directory)
  if not folder.is_dir():
    raise ExportError(f"image folder {folder} does not exist")
  paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
  if not paths:
    raise ExportError(f"image folder {folder} holds no image ({', '.join(IMAGE_SUFFIXES)})")
  stems = [p.stem for p in paths]
  dups = sorted({s for s in stems if stems.count(s) > 1})
  if dups:
    raise ExportError(
        f"image folder {folder} has files sharing a stem ({dups[:3]}); maps are keyed by the stem"
    )

  def read(index: int) -> np.ndarray:
    try:
      with files.open_image(paths[index], whole=True) as image:
        return np.asarray(image.convert("RGB"))
    except Exception as e:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ...
      raise BadImageError(
          f"image of example {stems[index]!r} ({paths[index]}) cannot be decoded ({e})"
      ) from e

  return Images(
      source={"dataset": "folder", "data_dir": os.fspath(folder), "split": split},
      split=split,
      example_ids=stems,
      describe=lambda index: str(paths[index]),
      read=read,
  )


def source_images(
    source,
    dataset: str,
    data_dir: str | os.PathLike,
    split: str,
    *,
    provenance: dict[str, Any] | None = None,
) -> Images:
  """The images a training pipeline source gives before augmentation: ``source.load(i)["image"]``
  (float [H, W, 3] in [0, 1] at ``source.image_shape``) as uint8, keyed by
  ``source.example_id(i)``: exactly the images and ids that ``regions.WithRegionMaps`` pairs
  the maps with.

  For the variable-size datasets (NYUD-MT, PASCAL-Context) that is the image fitted to the
  canvas (``mtjax.data.geometry``): maps exported for one geometry or canvas do not fit another,
  so pass them as ``provenance`` (they go to the manifest, and ``export`` refuses to add maps of
  another fitting to a directory). ``tools/export_regions.py --dataset`` builds the source with
  ``mtjax.data.sources.create_source``.

  Args:
    source: a pipeline source (``num_examples``, ``image_shape``, ``example_id``, ``load``).
    dataset: ``config.dataset.name``, for the manifest.
    data_dir: the dataset root, for the manifest.
    split: the split the maps go to (``REGION_DIR/{split}/``).
    provenance: more of the manifest's ``source``, e.g. ``{"geometry": "resize", "size": [H, W],
      "archive": "mtinet", "role": "train"}``.

  Raises:
    ExportError: ``provenance`` overrides ``dataset``, ``data_dir`` or ``split``. ``read``
      raises ``BadImageError`` for an example the source cannot load (naming it and the error).
  """
  provenance = dict(provenance or {})
  clash = sorted({"dataset", "data_dir", "split"} & set(provenance))
  if clash:
    raise ExportError(f"provenance may not override {clash}")
  height, width = (int(d) for d in source.image_shape)
  example_ids = [str(source.example_id(index)) for index in range(source.num_examples)]
  layout = f"float [H, W, 3] in [0, 1] at the source's image_shape {height}x{width}"

  def describe(index: int) -> str:
    return f"{dataset} {split}[{index}] (id {example_ids[index]}) in {data_dir}"

  def read(index: int) -> np.ndarray:
    try:
      image = source.load(index)["image"]
    except (OSError, ValueError, KeyError) as e:  # The readers name the file in their messages.
      raise BadImageError(
          f"example {example_ids[index]!r} ({describe(index)}) cannot be loaded ({e})"
      ) from e
    image = _to_uint8(image, example_ids[index], describe(index), layout)
    if image.shape[:2] != (height, width):
      raise BadImageError(
          f"image of example {example_ids[index]!r} ({describe(index)}) is "
          f"{image.shape[0]}x{image.shape[1]}; expected {layout}"
      )
    return image

  return Images(
      source={
          "dataset": dataset,
          "data_dir": os.fspath(fileio.as_path(data_dir)),
          "split": split,
          **provenance,
      },
      split=split,
      example_ids=example_ids,
      describe=describe,
      read=read,
  )
