"""Region maps: the on-disk format shared by every exporter and the input pipeline, the region
sources of training batches, and the relabelling before the train step.

Region-aware distribution contrast (Li et al., ECCV 2024) compares per-region feature Gaussians;
its regions come from SAM masks exported ahead of time (``tools/``, PyTorch), or need no export
(instance ids, a patch grid, ground-truth classes). Reference: docs/regions.md.

**On disk** (format ``"mtjax-regions/1"``; exporters number their regions with ``paint_masks`` or
``renumber_by_area`` and write them with ``write_manifest`` and ``write_map``
(``tools/export_regions.py``, ``mtjax.data.region_export``); the pipeline reads them with
``read_manifest`` and ``read_map``)::

    REGION_DIR/manifest.json              provenance: format, method, source, parameters,
                                          package_versions, image_size [H, W], counts, ...
    REGION_DIR/{split}/{example_id}.png   one map per example

* ``example_id`` is the example's stable id (``source.example_id(index)``): NYUv2 (MTAN layout)
  the file index of ``{split}/image/{i}.npy`` without padding (``0``, ``1``, ...);
  procedural_rooms its TFDS ``id`` (``train_0000042``).
* Each map is a single-channel **uint16** PNG of the image's stored size (before augmentation).
  0 = no region; 1..N = regions ordered by area, largest first, every id present (N ≤ 65,535).
  Where an exporter's masks overlap, the smaller mask wins (paint largest to smallest, then
  renumber by painted area).
* Writers write a temporary file in the same directory and rename it, so a killed export never
  leaves a truncated map; a writer refuses a directory whose manifest has another ``method`` or
  other ``parameters`` (unless told to overwrite); a reader refuses an unknown ``format``.

**In memory** (ARCHITECTURE.md): region ids are int32 with −1 = none. ``read_map`` returns the
file's value − 1.

**Region sources** (``config.regions.source``), attached to *train* batches as ``regions`` int32
[B, H, W] (never to eval batches):

* ``"instance"``: the generated dataset's instance ids (procedural_rooms), before augmentation.
* ``"files"``: exported maps under ``config.regions.dir``, before augmentation.
* ``"patch"``: a regular grid of ``patch_size`` x ``patch_size`` pixels on the augmented image
  (the paper's "patch-aware" extraction).
* ``"semantic_gt"``: one region per ground-truth class present in the augmented image, or, with
  ``split_components``, per 8-connected component of each class (the paper's Table 4 oracle; it
  reads the semseg ground truth even where the label mask hides it from the loss).

Maps from before augmentation go through the same scale-crop and flip as the labels, nearest
(``mtjax.data.augment``). Then ``relabel_by_area`` keeps the ``max_regions`` largest regions of at
least ``min_pixels`` pixels, counted at the resolution the loss uses (every ``loss_stride``-th
pixel), as 0..R−1 by decreasing area.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from typing import Any

import numpy as np
import scipy.ndimage
from etils import epath
from PIL import Image

from mtjax import fileio

__all__ = [
    "FORMAT",
    "MAX_FILE_ID",
    "RELABELS",
    "RegionSpec",
    "SOURCES",
    "WithRegionMaps",
    "check_map_header",
    "keep_ids",
    "map_path",
    "paint_masks",
    "patch_regions",
    "read_manifest",
    "read_map",
    "relabel_by_area",
    "renumber_by_area",
    "semantic_regions",
    "write_manifest",
    "write_map",
]


FORMAT = "mtjax-regions/1"
SOURCES = ("none", "instance", "patch", "semantic_gt", "files")
RELABELS = ("area", "none")
MAX_FILE_ID = 65_535
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_LAYOUT = (
    "REGION_DIR/{split}/{example_id}.png: single-channel 16-bit PNG of the image's size, "
    "0 = no region, 1..N = regions (docs/regions.md)"
)


# --------------------------------------------------------------------------------------------
# The format
# --------------------------------------------------------------------------------------------


def map_path(region_dir: str | os.PathLike, split: str, example_id: str) -> epath.Path:
  """``REGION_DIR/{split}/{example_id}.png`` (``region_dir`` a local path or a gs:// URL)."""
  return fileio.as_path(region_dir) / split / f"{example_id}.png"


def read_manifest(region_dir: str | os.PathLike) -> dict[str, Any]:
  """The manifest of a region directory.

  Raises:
    FileNotFoundError: no ``manifest.json`` in ``region_dir``.
    ValueError: not a JSON object, or a ``format`` other than ``FORMAT``.
  """
  path = fileio.as_path(region_dir) / "manifest.json"
  if not path.is_file():
    raise FileNotFoundError(
        f"region directory {region_dir} has no manifest.json; expected {_LAYOUT}"
    )
  return fileio.read_versioned_json(path, FORMAT, "a region manifest")


def write_manifest(
    region_dir: str | os.PathLike, manifest: dict[str, Any], *, overwrite: bool = False
) -> None:
  """Writes ``manifest.json`` (``format`` is set to ``FORMAT``), atomically.

  Raises:
    ValueError: ``manifest`` lacks ``method`` or ``parameters``; or ``region_dir`` already has a
      manifest of another format, method or parameters and ``overwrite`` is False.
  """
  for key in ("method", "parameters"):
    if key not in manifest:
      raise ValueError(f"a region manifest needs {key!r}; got keys {sorted(manifest)}")
  path = fileio.as_path(region_dir) / "manifest.json"
  if path.exists() and not overwrite:
    old = read_manifest(region_dir)
    for key in ("method", "parameters"):
      if old.get(key) != manifest[key]:
        raise ValueError(
            f"{path} holds maps of {key} {old.get(key)!r}, not {manifest[key]!r}; write to "
            "another directory or pass overwrite=True"
        )
  text = json.dumps({**manifest, "format": FORMAT}, indent=2, sort_keys=True) + "\n"
  fileio.write_atomic(path, text)


def write_map(
    region_dir: str | os.PathLike, split: str, example_id: str, ids: np.ndarray
) -> epath.Path:
  """Writes one map (file values: 0 = none, 1..N), atomically; returns its path.

  Raises:
    ValueError: ``ids`` not a 2-D integer array with values in [0, 65535].
  """
  ids = np.asarray(ids)
  if ids.ndim != 2 or not np.issubdtype(ids.dtype, np.integer):
    raise ValueError(f"a region map is an integer [H, W] array; got {ids.dtype} {ids.shape}")
  if ids.size and (ids.min() < 0 or ids.max() > MAX_FILE_ID):
    raise ValueError(
        f"region map values must be in [0, {MAX_FILE_ID}]; got [{ids.min()}, {ids.max()}]"
    )
  path = map_path(region_dir, split, example_id)
  png = io.BytesIO()
  Image.fromarray(ids.astype(np.uint16)).save(png, format="PNG")
  fileio.write_atomic(path, png.getvalue())
  return path


def renumber_by_area(labels: np.ndarray) -> np.ndarray:
  """Labels → file values: 0 stays "no region", the other labels become 1..N by decreasing area.

  Equal areas keep the order of their labels (the smaller label gets the smaller id). Every id
  1..N has at least one pixel. This is the numbering every exporter writes (docs/regions.md).

  Args:
    labels: integer [H, W]; 0 (or any negative value) = no region, any positive value a region
      (superpixel labels must be shifted to start at 1).

  Returns:
    uint16 [H, W] file values.

  Raises:
    ValueError: ``labels`` not a 2-D integer array, or more than 65,535 regions.
  """
  labels = np.asarray(labels)
  if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(
        f"region labels are an integer [H, W] array; got {labels.dtype} {labels.shape}"
    )
  values, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
  region = values > 0
  if region.sum() > MAX_FILE_ID:
    raise ValueError(
        f"{region.sum()} regions do not fit a uint16 map (at most {MAX_FILE_ID}); coarsen the "
        "exporter's parameters"
    )
  order = np.lexsort((values, -counts))  # Area descending, then label ascending.
  order = order[region[order]]
  new_id = np.zeros(values.size, np.uint16)
  new_id[order] = np.arange(1, order.size + 1)
  return new_id[inverse.reshape(labels.shape)]


def paint_masks(masks: np.ndarray) -> np.ndarray:
  """Overlapping binary masks (SAM's automatic generator) → one map of file values.

  Masks are painted from the largest to the smallest, so the smaller mask wins where masks
  overlap (equal areas: the later mask wins); then ``renumber_by_area`` numbers the painted
  regions 1..N by their painted areas. A mask wholly covered by smaller ones disappears.
  Reference: docs/regions.md, "On disk".

  Args:
    masks: bool [M, H, W] (M may be 0).

  Returns:
    uint16 [H, W]: 0 = no mask, 1..N.

  Raises:
    ValueError: ``masks`` not a 3-D boolean array, or more than 65,535 painted regions.
  """
  masks = np.asarray(masks)
  if masks.ndim != 3 or masks.dtype != np.bool_:
    raise ValueError(f"masks are a bool [M, H, W] array; got {masks.dtype} {masks.shape}")
  canvas = np.zeros(masks.shape[1:], np.int64)
  areas = masks.sum(axis=(1, 2))
  for m in np.argsort(-areas, kind="stable"):
    canvas[masks[m]] = m + 1
  return renumber_by_area(canvas)


def check_map_header(path: epath.Path, example_id: str, image_shape: tuple[int, int]) -> None:
  """Checks a map's PNG header (no pixel read): 16-bit, single channel, ``image_shape``.

  Raises:
    FileNotFoundError: the map is missing. ValueError: anything else is wrong. Both name the
      example id, the path and the expected layout.
  """
  where = f"region map of example {example_id!r} ({path})"
  if not path.is_file():
    raise FileNotFoundError(f"{where} is missing; expected {_LAYOUT}")
  with path.open("rb") as f:
    head = f.read(26)
  if len(head) < 26 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
    raise ValueError(f"{where} is not a PNG; expected {_LAYOUT}")
  width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
  bit_depth, color_type = head[24], head[25]
  if color_type != 0 or bit_depth != 16:
    kind = {0: "grayscale", 2: "RGB", 3: "palette", 4: "grayscale+alpha", 6: "RGBA"}.get(color_type)
    raise ValueError(
        f"{where} is a {bit_depth}-bit {kind or f'color type {color_type}'} PNG; expected {_LAYOUT}"
    )
  if (height, width) != tuple(image_shape):
    raise ValueError(
        f"{where} is {height}x{width}; expected the image's {image_shape[0]}x{image_shape[1]} "
        f"({_LAYOUT})"
    )


def read_map(path: epath.Path, example_id: str, image_shape: tuple[int, int]) -> np.ndarray:
  """One map as int32 [H, W] region ids, −1 = none (file value − 1).

  Raises:
    FileNotFoundError / ValueError: as ``check_map_header``.
  """
  check_map_header(path, example_id, image_shape)
  with Image.open(io.BytesIO(path.read_bytes())) as image:
    ids = np.asarray(image)
  if ids.dtype != np.uint16 or ids.shape != tuple(image_shape):
    raise ValueError(
        f"region map of example {example_id!r} ({path}) decoded as {ids.dtype} {ids.shape}; "
        f"expected {_LAYOUT}"
    )
  return ids.astype(np.int32) - 1


# --------------------------------------------------------------------------------------------
# Region sources and relabelling (NumPy; the pipeline calls them through tf.numpy_function)
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RegionSpec:
  """What the training pipeline attaches as ``regions`` (``config.regions``; module docstring).

  Attributes:
    source: one of ``SOURCES``; ``"none"`` attaches nothing.
    dir: region directory (``source="files"``).
    patch_size: grid cell in pixels (``source="patch"``).
    split_components: one region per connected component of each class (``"semantic_gt"``).
    max_regions: R, the number of regions kept per image.
    min_pixels: regions with fewer pixels (at the loss resolution) are dropped.
    loss_stride: the loss sees every ``loss_stride``-th pixel; areas are counted there.
    relabel: ``"area"`` (``relabel_by_area``) or ``"none"``: the ids as they are (an id ≥
      ``max_regions`` becomes −1): RDC's released regions, one per 8-bit gray value 0..255 in
      value order (``tools/convert_released_regions.py``; its loss applies its own 10-pixel rule).

  Raises:
    ValueError: an unknown source or relabel; ``files`` without ``dir``; a non-positive size.
  """

  source: str = "none"
  dir: str = ""
  patch_size: int = 32
  split_components: bool = False
  max_regions: int = 32
  min_pixels: int = 16
  loss_stride: int = 1
  relabel: str = "area"

  def __post_init__(self):
    if self.source not in SOURCES:
      raise ValueError(f"config.regions.source must be one of {SOURCES}, got {self.source!r}")
    if self.relabel not in RELABELS:
      raise ValueError(f"config.regions.relabel must be one of {RELABELS}, got {self.relabel!r}")
    if self.source == "files" and not self.dir:
      raise ValueError(
          "config.regions.source='files' needs config.regions.dir (a region directory)"
      )
    for name in ("patch_size", "max_regions", "min_pixels", "loss_stride"):
      if int(getattr(self, name)) < 1:
        raise ValueError(f"config.regions.{name} must be >= 1, got {getattr(self, name)}")

  @classmethod
  def from_config(cls, regions_config) -> RegionSpec:
    return cls(**{f.name: regions_config[f.name] for f in dataclasses.fields(cls)})

  @property
  def enabled(self) -> bool:
    return self.source != "none"

  @property
  def before_augmentation(self) -> bool:
    """Whether the map comes with the stored example (and is augmented with the labels)."""
    return self.source in ("instance", "files")


class WithRegionMaps:
  """A pipeline source whose examples also carry ``regions`` int32 [H, W] (−1 = none): the
  dataset's instance ids (``spec.source == "instance"``) or the exported maps of ``spec.dir``
  (``"files"``), read by ``source.example_id``. Every map's existence, size and PNG type is
  checked on construction from the headers (no pixel read), so a bad region directory fails
  before training starts; nothing is ever written there.

  Raises:
    ValueError: ``spec.source`` is not ``"instance"`` or ``"files"``; ``"instance"`` on a
      dataset without instance ids; a manifest of an unknown format or another image size; a
      map that is not a single-channel 16-bit PNG of the image's size. FileNotFoundError: no
      manifest, or a missing map. Messages name the example id, the path and the layout.
  """

  def __init__(self, source, spec: RegionSpec):
    if not spec.before_augmentation:
      raise ValueError(f"WithRegionMaps takes source 'instance' or 'files', not {spec.source!r}")
    self._source, self.spec = source, spec
    self.num_examples, self.tasks = source.num_examples, source.tasks
    self.image_shape, self.split = tuple(source.image_shape), source.split
    # What the pipeline and the label masks read from a reader, passed on unchanged.
    self.has_box = getattr(source, "has_box", False)
    self.label_tasks = getattr(source, "label_tasks", source.tasks)
    if spec.source == "instance":
      if not getattr(source, "has_instances", False):
        raise ValueError(
            f"config.regions.source='instance' needs a dataset with instance ids "
            f"(procedural_rooms); {type(source).__name__} has none"
        )
      return
    manifest = read_manifest(spec.dir)
    size = manifest.get("image_size")
    if size is not None and tuple(size) != self.image_shape:
      raise ValueError(
          f"{fileio.as_path(spec.dir) / 'manifest.json'} says image_size {size}; the {self.split} images "
          f"are {list(self.image_shape)}"
      )
    # Read once here, not per example in tf.data (procedural_rooms reads its id from the record).
    self._ids = [source.example_id(index) for index in range(self.num_examples)]
    for example_id in self._ids:
      check_map_header(map_path(spec.dir, self.split, example_id), example_id, self.image_shape)

  def example_id(self, index: int) -> str:
    return self._ids[index] if self.spec.source == "files" else self._source.example_id(index)

  def load(self, index: int) -> dict[str, np.ndarray]:
    example = self._source.load(index)
    if self.spec.source == "instance":
      example["regions"] = np.asarray(example["instance"], np.int32)
    else:
      example_id = self._ids[int(index)]
      path = map_path(self.spec.dir, self.split, example_id)
      example["regions"] = read_map(path, example_id, self.image_shape)
    return example


def relabel_by_area(
    ids: np.ndarray, max_regions: int, min_pixels: int = 1, loss_stride: int = 1
) -> np.ndarray:
  """Region ids → 0..R−1 by decreasing area, −1 elsewhere (docs/regions.md).

  Areas are pixel counts of ``ids[o::s, o::s]`` (s = ``loss_stride``, o = s // 2: the pixels a
  stride-s loss sees by nearest sampling). Regions with fewer than ``min_pixels`` counted pixels
  are dropped; of the rest the ``max_regions`` largest are kept, the largest becoming 0. Equal
  areas are ordered by the smaller input id. A region no sampled pixel falls in is dropped.

  Args:
    ids: integer [H, W], −1 (or any negative) = none.
    max_regions: R ≥ 1. min_pixels: ≥ 1. loss_stride: ≥ 1.

  Returns:
    int32 [H, W] in {−1, 0, ..., R−1}, full resolution.
  """
  ids = np.asarray(ids)
  sampled = ids[loss_stride // 2 :: loss_stride, loss_stride // 2 :: loss_stride]
  values, counts = np.unique(sampled[sampled >= 0], return_counts=True)
  order = np.lexsort((values, -counts))  # Area descending, then id ascending.
  order = order[counts[order] >= min_pixels][:max_regions]
  rank = np.full(values.size, -1, np.int32)
  rank[order] = np.arange(order.size, dtype=np.int32)
  if not values.size:
    return np.full(ids.shape, -1, np.int32)
  pos = np.minimum(np.searchsorted(values, ids), values.size - 1)  # ``values`` is sorted.
  return np.where((ids >= 0) & (values[pos] == ids), rank[pos], -1).astype(np.int32)


def keep_ids(ids: np.ndarray, max_regions: int) -> np.ndarray:
  """``relabel="none"``: int32 ids as they are where in [0, max_regions), −1 elsewhere."""
  ids = np.asarray(ids)
  return np.where((ids >= 0) & (ids < max_regions), ids, -1).astype(np.int32)


def patch_regions(height: int, width: int, patch_size: int) -> np.ndarray:
  """int32 [H, W]: cell index (row-major) of a grid of ``patch_size`` squares (edge cells smaller)."""
  cols = -(-width // patch_size)
  rows = np.arange(height)[:, None] // patch_size
  return (rows * cols + np.arange(width)[None, :] // patch_size).astype(np.int32)


def semantic_regions(semseg: np.ndarray, split_components: bool = False) -> np.ndarray:
  """int32 [H, W] regions from class ids (−1 ignore → −1): the class id itself, or with
  ``split_components`` one id per 8-connected component of each class (scipy.ndimage.label)."""
  semseg = np.asarray(semseg)
  if not split_components:
    return np.where(semseg >= 0, semseg, -1).astype(np.int32)
  out = np.full(semseg.shape, -1, np.int32)
  next_id = 0
  for cls in np.unique(semseg[semseg >= 0]):
    labels, count = scipy.ndimage.label(semseg == cls, structure=np.ones((3, 3)))
    out[labels > 0] = labels[labels > 0] - 1 + next_id
    next_id += count
  return out
