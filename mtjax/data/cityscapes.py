"""Cityscapes in the MTAN preprocessed 128x256 layout (used by MTPSL, JTR), read from its ``.npy``.

Layout (docs/metrics.md, "Cityscapes, MTAN preprocessed 128x256"):
``root/{split}/{image,label_7,depth}/{i}.npy`` for i = 0..N-1, 128x256 (2975 train / 500 val);
``label_2`` and ``label_19`` folders may also be present and are ignored.

What the public code says about the stored files (read at VICO-UoE/MTPSL e9d8859,
lorenmt/mtan c36c30b):

- N is the number of ``image/*.npy`` files: MTPSL ``dataset/cityscapesssl.py:51`` (and ``:92``).
- The three arrays are loaded with ``np.load`` and cast to float32 whatever their stored dtype
  (``dataset/cityscapesssl.py:55-59``, ``image.type(torch.FloatTensor)``), so the code does not fix
  the stored dtypes; they stay unverified. This reader therefore accepts any floating dtype for
  all three and also signed integers for ``label_7``. The image is channel-last
  (``np.moveaxis(..., -1, 0)`` at ``:55``), label ``[H, W]`` (``:56``), depth channel-last
  ``[H, W, 1]`` (``:57``).
- Image range: MTPSL applies no normalisation (``cityscapesssl.py:55``, bilinear resize only at
  ``:28``), so the network sees the stored values; [0, 1] is still an assumption (a third-party
  loader multiplies the stored image by 255 to get uint8), checked here on every load.
- label_7: class ids 0..6, -1 = void / ignore: MTPSL ``model/segnet_mtl_cityscapes.py:207``
  (``F.nll_loss(..., ignore_index=-1)``); the author in lorenmt/mtan issue #41.
- depth: the raw Cityscapes disparity ("(inverse) depth labels", lorenmt/mtan ``README.md:16``;
  issues #15, #25), 0 = invalid: the loss masks ``gt != 0`` (MTPSL
  ``model/segnet_mtl_cityscapes.py:220``) and so does the metric (``utils/evaluation.py:82``).
  MTPSL's RandomScaleCrop divides it by the zoom (``dataset/cityscapesssl.py:34``), which is
  physically backwards for disparity; ``mtjax.tasks.depth`` ``units="disparity"`` multiplies.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np
from etils import epath

from mtjax import fileio
from mtjax.data import files

CITYSCAPES_TASKS = ("semseg", "depth")
NUM_CLASSES = 7
IMAGE_SHAPE = (128, 256)
# Images may overshoot [0, 1] by this much (rounding in a preprocessing step); they are clipped.
IMAGE_TOLERANCE = 1e-3

# Folder -> trailing (channel) dims after H, W; the image fixes H and W for the rest.
_MODALITIES = {"image": (3,), "label_7": (), "depth": (1,)}
_TASK_FOLDERS = {"semseg": "label_7", "depth": "depth"}
_NPY_NAME = re.compile(r"(\d+)\.npy")


def _layout(split: str, folders: Sequence[str]) -> str:
  return f"{split}/{{{','.join(folders)}}}/{{i}}.npy, {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}"


def _dtype_ok(folder: str, dtype: np.dtype) -> bool:
  return dtype.kind == "f" or (folder == "label_7" and dtype.kind == "i")


def _dtype_text(folder: str) -> str:
  return "a float or signed-integer dtype" if folder == "label_7" else "a float dtype"


@dataclasses.dataclass(frozen=True)
class CityscapesSplit:
  """One split of MTAN-preprocessed Cityscapes (7 classes + disparity), validated on construction.

  Construction checks the split from the ``.npy`` headers only (no pixel is read) for the
  ``image`` folder and the folders of the requested tasks (``label_7`` for semseg, ``depth`` for
  depth; the others are not looked at, and need not exist): each folder exists and holds exactly
  ``0.npy .. N-1.npy`` with the same N > 0, and every file has shape image ``[H, W, 3]``,
  label_7 ``[H, W]``, depth ``[H, W, 1]``, where H, W come from ``image/0.npy`` (128x256 for
  the published data), and a float dtype (label_7: float or signed integer). Nothing is written.
  Reference: docs/metrics.md, "Cityscapes, MTAN preprocessed 128x256";
  MTPSL ``dataset/cityscapesssl.py`` (see the module docstring for what is verified).

  Args:
    data_dir: dataset root holding ``{split}/``: a local path or a ``gs://`` URL.
    split: split folder name, e.g. ``"train"`` or ``"val"``.
    tasks: the tasks to read, a non-empty subset of ``CITYSCAPES_TASKS`` (any order).

  Attributes:
    num_examples: N, the number of examples in the split.
    tasks: the requested tasks in dataset order (``CITYSCAPES_TASKS`` order).
    label_tasks: ``CITYSCAPES_TASKS`` = ("semseg", "depth"), the columns of a label setting.
    image_shape: ``(H, W)``.
    has_instances: False (no instance ids).

  Raises:
    FileNotFoundError: ``data_dir``, the split folder or a needed folder is missing.
    ValueError: bad ``tasks``; empty split, file names not exactly ``0.npy .. N-1.npy``, counts
      differing between folders, an unreadable file, or a wrong shape or dtype. Every message
      names the offending path and the expected layout.
  """

  data_dir: epath.Path | str
  split: str
  tasks: tuple[str, ...] = dataclasses.field(default=CITYSCAPES_TASKS, kw_only=True)
  num_examples: int = dataclasses.field(init=False)
  image_shape: tuple[int, int] = dataclasses.field(init=False)
  label_tasks: tuple[str, ...] = dataclasses.field(init=False, default=CITYSCAPES_TASKS)
  # folder -> per file (data offset, dtype, memory order), read from the headers on construction.
  _files: dict[str, tuple[files.Header, ...]] = dataclasses.field(
      init=False, repr=False, compare=False
  )

  def __post_init__(self):
    requested = (self.tasks,) if isinstance(self.tasks, str) else tuple(self.tasks)
    unknown = [t for t in requested if t not in CITYSCAPES_TASKS]
    if not requested or unknown or len(set(requested)) != len(requested):
      raise ValueError(
          f"Cityscapes tasks {requested} must be a non-empty list of distinct tasks of "
          f"{CITYSCAPES_TASKS} (unknown: {unknown})."
      )
    object.__setattr__(self, "tasks", tuple(t for t in CITYSCAPES_TASKS if t in requested))
    folders = ("image", *(_TASK_FOLDERS[t] for t in self.tasks))
    root = fileio.as_path(self.data_dir)
    object.__setattr__(self, "data_dir", root)
    layout = _layout(self.split, folders)
    if not root.is_dir():
      raise FileNotFoundError(f"Cityscapes data_dir {root} does not exist; expected {layout}.")
    split_dir = root / self.split
    if not split_dir.is_dir():
      raise FileNotFoundError(
          f"Cityscapes split folder {split_dir} does not exist; expected {layout}."
      )

    num = None
    for folder_name in folders:
      folder = split_dir / folder_name
      if not folder.is_dir():
        raise FileNotFoundError(f"Cityscapes folder {folder} does not exist; expected {layout}.")
      names = [p.name for p in folder.glob("*.npy")]
      if not names:
        raise ValueError(
            f"Cityscapes split is empty: no .npy files in {folder}; expected {layout}."
        )
      ids = sorted(int(m.group(1)) for m in map(_NPY_NAME.fullmatch, names) if m)
      if len(ids) != len(names) or ids != list(range(len(ids))):
        odd = sorted(set(names) - {f"{i}.npy" for i in range(len(names))})[:3]
        raise ValueError(
            f"Cityscapes files in {folder} are not exactly 0.npy..{len(names) - 1}.npy "
            f"(unexpected: {odd}); expected {layout}."
        )
      if num is not None and len(ids) != num:
        raise ValueError(
            f"Cityscapes {folder} has {len(ids)} files but {split_dir / 'image'} has {num}; "
            f"expected the same count in every folder of {layout}."
        )
      num = len(ids)
    object.__setattr__(self, "num_examples", num)

    first = split_dir / "image" / "0.npy"
    shape = files.read_header(first, "Cityscapes", layout).shape
    if len(shape) != 3 or shape[-1] != 3 or 0 in shape:
      raise ValueError(
          f"Cityscapes file {first} has shape {shape}; expected [H, W, 3] with H, W > 0 "
          f"in {layout}."
      )
    object.__setattr__(self, "image_shape", tuple(int(d) for d in shape[:2]))
    jobs = [
        (split_dir / name / f"{i}.npy", name, self.image_shape + _MODALITIES[name], layout)
        for name in folders
        for i in range(num)
    ]
    checked = files.map_in_threads(_check, jobs)
    headers = {name: tuple(checked[k * num : (k + 1) * num]) for k, name in enumerate(folders)}
    object.__setattr__(self, "_files", headers)

  has_instances = False  # No instance ids: config.regions.source="instance" is refused.

  def example_id(self, index: int) -> str:
    """The stable id of example ``index`` (region maps are keyed by it): the file index, ``"7"``."""
    return str(files.check_index(index, self.num_examples, f"Cityscapes {self.split}"))

  def load(self, index: int) -> dict[str, np.ndarray]:
    """Loads example ``index`` in the conventions of SPEC.md, with the requested tasks only.

    Returns:
      dict with ``image`` float32 [H, W, 3] in [0, 1] (values within ``IMAGE_TOLERANCE`` outside
      are clipped); if requested, ``semseg`` int32 [H, W], classes 0..6, -1 = ignore, and
      ``depth`` float32 [H, W, 1], the stored disparity unchanged, 0 = invalid.

    Thread-safe (tf.data calls it from parallel threads): each file's bytes are read at the
    header offset recorded on construction (``mtjax.data.files``).

    Raises:
      IndexError: ``index`` outside [0, num_examples).
      ValueError: a file's values break the conventions (naming the file): image non-finite or
        outside [0, 1] by more than ``IMAGE_TOLERANCE``; label_7 not an integer in -1..6; depth
        negative or non-finite; or a file shorter than its header promises.
    """
    index = files.check_index(index, self.num_examples, f"Cityscapes {self.split}")
    split_dir = self.data_dir / self.split

    def read(folder):
      path = split_dir / folder / f"{index}.npy"
      return path, files.read_data(path, self._files[folder][index], "Cityscapes")

    path, image = read("image")
    image = image.astype(np.float32)
    bad = ~(np.isfinite(image) & (image >= -IMAGE_TOLERANCE) & (image <= 1 + IMAGE_TOLERANCE))
    if bad.any():
      raise ValueError(
          f"Cityscapes file {path} has {int(bad.sum())} values outside [0, 1] (tolerance "
          f"{IMAGE_TOLERANCE}) or non-finite (e.g. {image[bad].flat[0]}); expected an RGB "
          f"image in [0, 1]."
      )
    example = {"image": np.clip(image, 0.0, 1.0)}
    if "semseg" in self.tasks:
      path, label = read("label_7")
      bad = ~np.isin(label, np.arange(-1, NUM_CLASSES))
      if bad.any():
        raise ValueError(
            f"Cityscapes file {path} has {int(bad.sum())} pixels outside the class ids "
            f"{{-1, 0..{NUM_CLASSES - 1}}} (e.g. {label[bad].flat[0]}); expected label_7 "
            f"classes 0..{NUM_CLASSES - 1} with -1 = ignore."
        )
      example["semseg"] = label.astype(np.int32)
    if "depth" in self.tasks:
      path, depth = read("depth")
      depth = depth.astype(np.float32)
      bad = ~(np.isfinite(depth) & (depth >= 0))
      if bad.any():
        raise ValueError(
            f"Cityscapes file {path} has {int(bad.sum())} negative or non-finite pixels "
            f"(e.g. {depth[bad].flat[0]}); expected disparity >= 0, 0 = invalid."
        )
      example["depth"] = depth
    return example


def _check(path: epath.Path, folder: str, expected: tuple[int, ...], layout: str) -> files.Header:
  """Checks a .npy's dtype and shape; returns its header for ``load``."""
  header = files.read_header(path, "Cityscapes", layout)
  if not _dtype_ok(folder, header.dtype):
    raise ValueError(
        f"Cityscapes file {path} has dtype {header.dtype}; expected {_dtype_text(folder)} in "
        f"{layout}."
    )
  if header.shape != expected:
    raise ValueError(
        f"Cityscapes file {path} has shape {header.shape}; expected {expected} in {layout}."
    )
  return header
