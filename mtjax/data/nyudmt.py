"""NYUD-MT (NYUDv2 multi-task: 40-class semseg, depth, normals, edges), read from any of its three
public archives, each in its own on-disk format.

Layout (docs/metrics.md, "NYUD-MT")::

  data_dir/gt_sets/{split}.txt          one id a line (795 train / 654 val, e.g. "0001")
  data_dir/images/{id}.{ext}            RGB
  data_dir/segmentation/{id}.{ext}      semseg
  data_dir/depth/{id}.{ext}             depth
  data_dir/normals/{id}.{ext}           normal
  data_dir/edge/{id}.{ext}              edge

Archives (``archive=``), the files' formats as images / segmentation / depth / normals / edge:

- ``mtinet``: MTI-Net's ``NYUD_MT.tgz`` (Google Drive; MTI-Net, MT-CP, ATRC since 2023-08):
  jpg / png / npy / npy / npy.
- ``atrc``: ATRC's ``NYUDv2.tar.gz`` (re-hosted by InvPT; InvPT, DiffusionMTL):
  png / png / npy / png / png.
- ``astmt``: ASTMT's ``NYUD_MT.tgz`` (data.vision.ee.ethz.ch): jpg / mat (variable
  ``segmentation``) / mat (variable ``depth``) / jpg / png.

What the reference loaders say (MTI = SimonVandenhende/Multi-Task-Learning-PyTorch @ ed3d9ac;
INV = prismformore/Multi-Task-Transformer @ 870c6be; ATRC = brdav/atrc @ 76d8055 (archive mtinet)
and @ 9fc4cdf (archive atrc); ASTMT = facebookresearch/astmt @ 4d5d9bf). "derived" = follows from
the code, not stated there; nothing here was checked against the archives themselves.

- Folders and extensions: MTI ``data/nyud.py:68-91`` (folders), ``:101,107,112,117,122`` (jpg,
  edge npy, segmentation png, normals npy, depth npy); ATRC @76d8055 ``src/data/nyud.py:115-134``
  (the same); INV ``InvPT/data/nyud.py:96-117`` (png, edge png, segmentation png, normals png,
  depth npy); ATRC @9fc4cdf ``src/data/nyud.py:83-102`` (the same as INV); ASTMT
  ``fblib/dataloaders/nyud.py:94-113`` (jpg, edge png, segmentation mat, normals jpg, depth mat).
  The split file is read with ``f.read().splitlines()`` (MTI ``:95-96``); the references assert
  every task's file for every id even when the task is off (MTI ``:100-124``); this reader only
  needs the files of the requested tasks.
- Image: PIL ``convert('RGB')`` (MTI ``:189``, INV ``:184``, ASTMT ``:180``); here / 255.
- Semseg png: 0 = unlabelled, c -> c - 1 (0..39), 0 -> 255 ignore (MTI ``:198-200``; INV
  ``:196-197``); here 0 -> −1. The png is single-channel (derived: INV ``:196`` adds a channel
  axis and its ``PadImage`` builds [H, W, C] from it, ``InvPT/data/transforms.py:120-123``).
  ASTMT reads ``loadmat(...)['segmentation']`` and trained 41-way with 0 kept as a class
  (``fblib/dataloaders/nyud.py:188-193``); this reader maps it as the others (0 -> −1, c -> c − 1,
  40 classes), so archive astmt gives the same task as the other two.
- Depth: ``np.load`` cast to float32 (MTI ``:204``; INV ``:201-202``), ``loadmat(...)['depth']``
  (ASTMT ``:201``); metres (docs/metrics.md: a user in INV issue #25), 0 = invalid
  (MTI ``data/custom_transforms.py:264-265``, ``evaluation/eval_depth.py:39``). The npy is 2-D
  [h, w] in both npy archives (derived: ATRC ``src/data/nyud.py:203-204`` and INV ``:201-202``
  add the channel axis before ``PadImage``, which needs [h, w, C]; MTI ``evaluation/
  eval_depth.py:35-37`` resizes a 2-D prediction to ``label.shape[::-1]``); [h, w, 1] is accepted.
- Normals: mtinet npy loaded raw (MTI ``:208``; ATRC ``:199``), [h, w, 3] (derived: ATRC pads
  it without adding an axis); invalid pixels are all-zero (derived: MTI
  ``evaluation/eval_normals.py:32-35`` skips all-zero images, ``:46`` scores ‖n‖ ≠ 0 only;
  ``custom_transforms.py:253-255`` ignores ‖n‖ = 0); the [−1, 1] range is unverified and
  checked per read. atrc png / astmt jpg: 2 v / 255 − 1 (INV ``:207``, ASTMT ``:196-197``): never
  exactly 0, so nothing is invalid (derived).
- Edge: mtinet npy cast to float32 (MTI ``:193``), 2-D [h, w] (derived: ATRC
  ``src/data/nyud.py:187-188`` adds the channel axis), values {0, 1} assumed (unverified,
  checked per read). atrc / astmt png / 255 (INV ``:189-190``, ASTMT ``:184``), single-channel
  (derived: ASTMT ``:145`` compares its shape with the image's [h, w]); {0, 255} checked per read.
- Sizes: the references resize a label whose size differs from its image's to the image's
  (MTI ``:150-174``, INV ``:145-169``, ASTMT ``:143-165``; MTI prints "RESHAPE SEMSEG"); this
  reader requires equal sizes (ValueError at construction). The pixel size of the archives is
  unverified (ATRC declares 425x560, ``src/data/nyud.py:56``; INV pads to 448x576).
- ``pad`` geometry: INV's ``PadImage`` (``InvPT/data/transforms.py:79-137``) centres with
  top = (H − h) // 2, left = (W − w) // 2 (``:104-114``: delta // 2), fills image 0, semseg /
  edge 255, depth 0, normals 0 (``:94-100``), and passes a larger image through unpadded
  (``:107-108``); ``mtjax.data.geometry`` does the same centring and raises for a larger image
  (here already at construction).

Nothing is ever written into ``data_dir``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from etils import epath
from PIL import Image

from mtjax import fileio
from mtjax.data import files
from mtjax.data import geometry as geometry_lib

ARCHIVES = ("mtinet", "atrc", "astmt")
NYUDMT_TASKS = ("semseg", "depth", "normal", "edge")  # Dataset order.
NUM_CLASSES = 40
# Stored normals (archive mtinet) may overshoot [−1, 1] by this much; they are clipped.
NORMAL_TOLERANCE = 1e-3

# Kind of file -> folder; "image" is read for every task.
_FOLDERS = {
    "image": "images",
    "semseg": "segmentation",
    "depth": "depth",
    "normal": "normals",
    "edge": "edge",
}
# Archive -> kind -> extension (docs/datasets.md; module docstring).
_FORMATS = {
    "mtinet": {"image": "jpg", "semseg": "png", "depth": "npy", "normal": "npy", "edge": "npy"},
    "atrc": {"image": "png", "semseg": "png", "depth": "npy", "normal": "png", "edge": "png"},
    "astmt": {"image": "jpg", "semseg": "mat", "depth": "mat", "normal": "jpg", "edge": "png"},
}
_DESCRIPTIONS = {
    "mtinet": "MTI-Net's NYUD_MT.tgz",
    "atrc": "ATRC's NYUDv2.tar.gz",
    "astmt": "ASTMT's NYUD_MT.tgz",
}
_MAT_KEYS = {"semseg": "segmentation", "depth": "depth"}
_PIL_FORMATS = {"jpg": "JPEG", "png": "PNG"}
# PIL modes of the image files a kind accepts (None: any, converted to RGB as the references do).
_MODES = {"image": None, "semseg": ("L", "P", "I;16", "I"), "normal": ("RGB",), "edge": ("L", "P")}
# npy: kind -> (accepted trailing dims after [h, w], accepted dtype kinds, their description).
_NPY = {
    "depth": (((), (1,)), "f", "a float dtype"),
    "normal": (((3,),), "f", "a float dtype"),
    "edge": (((), (1,)), "fiub", "a float, integer or bool dtype"),
}
_MAT_NUMERIC = (
    "double",
    "single",
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
)
_MAT_CLASSES = {"semseg": _MAT_NUMERIC, "depth": ("double", "single")}


def _layout(archive: str, split: str, kinds: Sequence[str]) -> str:
  files = ", ".join(
      f"{_FOLDERS[k]}/{{id}}.{_FORMATS[archive][k]}"
      + (f" (variable '{_MAT_KEYS[k]}')" if _FORMATS[archive][k] == "mat" else "")
      for k in kinds
  )
  return (
      f"the NYUD-MT layout of archive {archive!r} ({_DESCRIPTIONS[archive]}): "
      f"gt_sets/{split}.txt (one id a line) and {files}, each label of its image's size"
  )


class NYUDMTSplit:
  """One split of NYUD-MT in one archive's format, validated on construction (module docstring).

  Construction reads ``gt_sets/{split}.txt`` and lists each needed folder once, then checks the
  header of every needed file of every id (no pixel is decoded): the image and the files of the
  requested tasks (a task not requested may lack its folder; nothing else is opened). Checked:
  the file exists; images / pngs / jpgs are of the archive's format (JPEG or PNG) and a mode the
  references can read, with the image's size; ``.npy`` headers have the dtype and shape
  ([h, w] or [h, w, 1] depth and edge, [h, w, 3] normals); ``.mat`` files (``scipy.io.whosmat``)
  hold the variable (``segmentation`` / ``depth``) as a numeric [h, w] array; and under ``pad``
  (or ``resize`` in the evaluation role) every image fits the canvas. Cost: one header read per
  file, about 0.3 s for 795 ids with all tasks (synthetic 425x560 files, warm page cache);
  pixel values are checked by ``read``. Nothing is written into ``data_dir``.

  Args:
    data_dir: the folder holding ``images/``, ``gt_sets/``, ... (e.g. the extracted
      ``NYUD_MT``).
    split: the split list's name: ``gt_sets/{split}.txt`` (``"train"`` or ``"val"``).
    tasks: a non-empty subset of ``NYUDMT_TASKS`` (a string is one task); kept in
      ``NYUDMT_TASKS`` order.
    archive: the archive's format, one of ``ARCHIVES`` (module docstring table).
    size: (H, W) of the canvas ``load`` fits examples to (``image_shape``).
    geometry: ``"resize"`` | ``"pad"`` (``mtjax.data.geometry``).
    role: ``"train"`` | ``"eval"``.
    normal_interpolation: ``"cubic"`` (MTI-Net) | ``"nearest"`` (MT-CP), for ``"resize"``.

  Attributes:
    num_examples: the number of ids in the split list.
    tasks: the requested tasks, in ``NYUDMT_TASKS`` order.
    label_tasks: ``NYUDMT_TASKS``, every task the dataset labels.
    image_shape: ``size``, the (H, W) of ``load``'s maps.
    native_shapes: per example, its image's (h, w) as stored.
    split, archive, data_dir: as given (``data_dir`` an ``epath.Path``, absolute).
    has_instances: False (no instance ids for ``config.regions.source="instance"``).
    has_box: True (``load`` returns ``box``, ``mtjax.data.pipeline``).

  Raises:
    ValueError: unknown / repeated / no tasks, an unknown archive, a bad size, geometry, role or
      normal_interpolation; an empty split list, a repeated or malformed id; a file that is not
      of the archive's format, mode, dtype or variable; a label whose size differs from its
      image's; an image larger than the canvas under ``pad`` / evaluation ``resize``.
    FileNotFoundError: ``data_dir``, ``gt_sets/{split}.txt``, a needed folder, or a needed file of
      some id is missing (the message names the first missing path, how many ids lack one, and
      which archive stores that file under another extension if one is found).
    Every message names the offending path and the expected layout.
  """

  has_instances = False
  has_box = True
  label_tasks = NYUDMT_TASKS

  def __init__(
      self,
      data_dir: str | os.PathLike,
      split: str,
      *,
      tasks: Sequence[str] | str = NYUDMT_TASKS,
      archive: str = "mtinet",
      size: tuple[int, int] = (480, 640),
      geometry: str = "resize",
      role: str = "train",
      normal_interpolation: str = "cubic",
  ):
    requested = (tasks,) if isinstance(tasks, str) else tuple(tasks)
    unknown = [t for t in requested if t not in NYUDMT_TASKS]
    if not requested or unknown or len(set(requested)) != len(requested):
      raise ValueError(
          f"NYUD-MT tasks={requested!r}: expected a non-empty list of distinct names from "
          f"{NYUDMT_TASKS}; unknown: {unknown}"
      )
    if archive not in ARCHIVES:
      raise ValueError(f"NYUD-MT archive={archive!r}; expected one of {ARCHIVES}")
    size = tuple(size)
    if len(size) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size
    ):
      raise ValueError(f"NYUD-MT size={size!r}: expected (H, W), two positive ints")
    if geometry not in geometry_lib.GEOMETRIES:
      raise ValueError(f"geometry={geometry!r}; expected one of {geometry_lib.GEOMETRIES}")
    if role not in geometry_lib.ROLES:
      raise ValueError(f"role={role!r}; expected one of {geometry_lib.ROLES}")
    if normal_interpolation not in geometry_lib.NORMAL_INTERPOLATIONS:
      raise ValueError(
          f"normal_interpolation={normal_interpolation!r}; expected one of "
          f"{geometry_lib.NORMAL_INTERPOLATIONS}"
      )
    self.data_dir = root = fileio.as_path(data_dir)
    self.split = split
    self.archive = archive
    self.tasks = tuple(t for t in NYUDMT_TASKS if t in requested)
    self.image_shape = (int(size[0]), int(size[1]))
    self._geometry, self._role, self._normal_interpolation = geometry, role, normal_interpolation
    self._kinds = ("image", *self.tasks)
    self._formats = _FORMATS[archive]
    self._layout = layout = _layout(archive, split, self._kinds)

    if not root.is_dir():
      raise FileNotFoundError(f"NYUD-MT data_dir {root} does not exist; expected {layout}.")
    split_file = root / "gt_sets" / f"{split}.txt"
    if not split_file.is_file():
      raise FileNotFoundError(
          f"NYUD-MT split file {split_file} does not exist{_nested_hint(root)}; expected {layout}."
      )
    self._ids = self._read_ids(split_file)
    self.num_examples = len(self._ids)

    self._paths = {kind: self._files(kind) for kind in self._kinds}
    # Per example: (h, w) of its image and the .npy headers of its .npy kinds (for ``read``).
    checked = files.map_in_threads(self._check_headers, [(i,) for i in range(self.num_examples)])
    self.native_shapes: tuple[tuple[int, int], ...] = tuple(hw for hw, _ in checked)
    self._npy: dict[str, tuple[files.Header, ...]] = {
        kind: tuple(headers[kind] for _, headers in checked)
        for kind in self._kinds
        if self._formats[kind] == "npy"
    }
    self._check_canvas()

  # --- construction helpers ----------------------------------------------------------------------

  def _check_headers(self, index: int) -> tuple[tuple[int, int], dict[str, files.Header]]:
    """Checks example ``index``'s file headers (no pixel decoded): (image (h, w), .npy headers)."""
    hw = self._image_header(self._paths["image"][index])
    headers = {}
    for kind in self.tasks:
      path, ext = self._paths[kind][index], self._formats[kind]
      if ext == "npy":
        headers[kind] = self._npy_header(kind, path, hw)
      elif ext == "mat":
        self._mat_header(kind, path, hw)
      else:
        self._pil_header(kind, path, hw)
    return hw, headers

  def _read_ids(self, split_file: epath.Path) -> tuple[str, ...]:
    try:
      lines = split_file.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as e:
      raise ValueError(
          f"NYUD-MT split file {split_file} is not readable text ({e}); expected {self._layout}."
      ) from e
    ids = [line.strip() for line in lines if line.strip()]
    if not ids:
      raise ValueError(f"NYUD-MT split is empty: no ids in {split_file}; expected {self._layout}.")
    bad = [i for i in ids if "/" in i or "\\" in i or i in (".", "..") or i.startswith(".")]
    if bad:
      raise ValueError(
          f"NYUD-MT split file {split_file} has ids {bad[:3]} that are not plain file stems; "
          f"expected {self._layout}."
      )
    if len(set(ids)) != len(ids):
      seen, repeated = set(), []
      for i in ids:
        if i in seen and i not in repeated:
          repeated.append(i)
        seen.add(i)
      raise ValueError(
          f"NYUD-MT split file {split_file} repeats ids {repeated[:3]}; expected each id once in "
          f"{self._layout}."
      )
    return tuple(ids)

  def _files(self, kind: str) -> tuple[epath.Path, ...]:
    folder = self.data_dir / _FOLDERS[kind]
    if not folder.is_dir():
      raise FileNotFoundError(
          f"NYUD-MT folder {folder} does not exist{_nested_hint(self.data_dir)}; expected "
          f"{self._layout}."
      )
    names = files.list_names(folder)
    ext = self._formats[kind]
    missing = [i for i in self._ids if f"{i}.{ext}" not in names]
    if missing:
      first = missing[0]
      others = sorted(
          {f[kind] for f in _FORMATS.values() if f[kind] != ext and f"{first}.{f[kind]}" in names}
      )
      hint = ""
      if others:
        users = [a for a in ARCHIVES if _FORMATS[a][kind] == others[0]]
        hint = (
            f" ({folder / f'{first}.{others[0]}'} exists: archive {' or '.join(map(repr, users))} "
            f"stores {_FOLDERS[kind]}/ as .{others[0]}; is archive={self.archive!r} right?)"
        )
      raise FileNotFoundError(
          f"NYUD-MT file {folder / f'{first}.{ext}'} does not exist ({len(missing)} of the "
          f"{self.num_examples} ids of {self.data_dir / 'gt_sets' / f'{self.split}.txt'} lack "
          f"{_FOLDERS[kind]}/{{id}}.{ext}){hint}; expected {self._layout}."
      )
    return tuple(folder / f"{i}.{ext}" for i in self._ids)

  def _open_pil(self, kind: str, path: epath.Path) -> tuple[str, str, tuple[int, int]]:
    """(format, mode, (h, w)) from the file's header."""
    try:
      with files.open_image(path) as im:
        return im.format, im.mode, (im.size[1], im.size[0])
    except (OSError, ValueError, Image.DecompressionBombError) as e:
      raise ValueError(
          f"NYUD-MT file {path} is not a readable {self._formats[kind]} image ({e}); expected "
          f"{self._layout}."
      ) from e

  def _image_header(self, path: epath.Path) -> tuple[int, int]:
    fmt, _, hw = self._open_pil("image", path)
    self._check_format("image", path, fmt)
    if 0 in hw:
      raise ValueError(f"NYUD-MT file {path} is empty ({hw[0]}x{hw[1]}); expected {self._layout}.")
    return hw

  def _check_format(self, kind: str, path: epath.Path, fmt: str | None) -> None:
    expected = _PIL_FORMATS[self._formats[kind]]
    if fmt != expected:
      raise ValueError(
          f"NYUD-MT file {path} is a {fmt} file, not a {expected}; expected {self._layout}."
      )

  def _check_size(
      self, path: epath.Path, what: str, hw: tuple[int, int], image_hw: tuple[int, int]
  ):
    if tuple(hw) != tuple(image_hw):
      raise ValueError(
          f"NYUD-MT file {path}{what} is {hw[0]}x{hw[1]} but its image is "
          f"{image_hw[0]}x{image_hw[1]}; expected equal sizes in {self._layout}."
      )

  def _pil_header(self, kind: str, path: epath.Path, image_hw: tuple[int, int]) -> None:
    fmt, mode, hw = self._open_pil(kind, path)
    self._check_format(kind, path, fmt)
    modes = _MODES[kind]
    if mode not in modes:
      raise ValueError(
          f"NYUD-MT file {path} has PIL mode {mode}; expected {' or '.join(modes)} "
          f"({'RGB' if kind == 'normal' else 'single-channel'}) for {kind} in {self._layout}."
      )
    self._check_size(path, "", hw, image_hw)

  def _npy_header(self, kind: str, path: epath.Path, image_hw: tuple[int, int]) -> files.Header:
    """Checks a .npy's header (dtype, shape, size; not truncated); returns it for ``read``."""
    header = files.read_header(path, "NYUD-MT", self._layout)
    trailing, dtype_kinds, dtype_text = _NPY[kind]
    if header.dtype.kind not in dtype_kinds:
      raise ValueError(
          f"NYUD-MT file {path} has dtype {header.dtype}; expected {dtype_text} for {kind} in "
          f"{self._layout}."
      )
    if len(header.shape) < 2 or header.shape[2:] not in trailing:
      expected = " or ".join(str(("h", "w", *t)).replace("'", "") for t in trailing)
      raise ValueError(
          f"NYUD-MT file {path} has shape {header.shape}; expected {expected} for {kind} in "
          f"{self._layout}."
      )
    self._check_size(path, " (npy header)", header.shape[:2], image_hw)
    return header

  def _mat_header(self, kind: str, path: epath.Path, image_hw: tuple[int, int]) -> None:
    key = _MAT_KEYS[kind]
    try:
      variables = {name: (shape, cls) for name, shape, cls in files.whosmat(path)}
    except Exception as e:  # scipy raises several types for a corrupt or v7.3 (HDF5) file.
      raise ValueError(
          f"NYUD-MT file {path} is not a readable MATLAB v5 .mat ({e!r}); expected {self._layout}."
      ) from e
    if key not in variables:
      raise ValueError(
          f"NYUD-MT file {path} has no variable {key!r} (has {sorted(variables)}); expected "
          f"{self._layout}."
      )
    shape, cls = variables[key]
    if cls not in _MAT_CLASSES[kind]:
      raise ValueError(
          f"NYUD-MT file {path} has {key} of MATLAB class {cls!r}; expected one of "
          f"{_MAT_CLASSES[kind]} in {self._layout}."
      )
    if len(shape) != 2:
      raise ValueError(
          f"NYUD-MT file {path} has {key} of shape {tuple(shape)}; expected [h, w] in "
          f"{self._layout}."
      )
    self._check_size(path, f" variable {key!r}", shape, image_hw)

  def _check_canvas(self) -> None:
    if self._geometry == "resize" and self._role == "train":
      return  # Every size is resized to the canvas.
    height, width = self.image_shape
    too_big = [i for i, (h, w) in enumerate(self.native_shapes) if h > height or w > width]
    if too_big:
      i = max(too_big, key=lambda j: self.native_shapes[j])
      h, w = self.native_shapes[i]
      raise ValueError(
          f"NYUD-MT image {self._paths['image'][i]} is {h}x{w}, larger than the {height}x{width} "
          f"canvas of geometry {self._geometry!r} ({self._role}) ({len(too_big)} of the "
          f"{self.num_examples} {self.split} images are); set config.dataset.size to at least the "
          f"largest image."
      )

  # --- reading -----------------------------------------------------------------------------------

  def example_id(self, index: int) -> str:
    """The id of example ``index`` from ``gt_sets/{split}.txt`` (e.g. ``"0001"``), its file stem.

    Raises:
      IndexError: ``index`` outside [0, num_examples).
    """
    return self._ids[files.check_index(index, self.num_examples, f"NYUD-MT {self.split}")]

  def read(self, index: int) -> dict[str, np.ndarray]:
    """Example ``index`` at its native size (h, w) in mtjax's conventions (``mtjax.tasks``).

    Returns:
      ``image`` float32 [h, w, 3] in [0, 1] (RGB / 255); and per requested task:
      ``semseg`` int32 [h, w], NYU-40 classes 0..39 (stored c − 1), −1 = unlabelled (stored 0);
      ``depth`` float32 [h, w, 1], metres, 0 = invalid;
      ``normal`` float32 [h, w, 3]: mtinet the stored vectors (overshoot within
        ``NORMAL_TOLERANCE`` clipped to [−1, 1]), all-zero = invalid; atrc / astmt 2 v / 255 − 1;
      ``edge`` float32 [h, w, 1] in {0, 1} (255 = ignore never occurs at native size).

    Only the files of the requested tasks are opened. Thread-safe: ``.npy`` data are read at the
    header offsets recorded on construction (``mtjax.data.files``); PIL and ``scipy.io.loadmat``
    share no state.

    Raises:
      IndexError: ``index`` outside [0, num_examples).
      ValueError: naming the file: unreadable or changed since construction (size, format,
        truncated); semseg not an integer in 0..40; depth negative or non-finite; normals
        non-finite or outside [−1, 1] (beyond ``NORMAL_TOLERANCE``); edge npy not in {0, 1},
        edge png not in {0, 255}.
    """
    index = files.check_index(index, self.num_examples, f"NYUD-MT {self.split}")
    hw = self.native_shapes[index]
    path = self._paths["image"][index]
    image = files.decode_image(path, "RGB", "NYUD-MT", self._layout)
    self._check_decoded(path, image, hw + (3,))
    out = {"image": image.astype(np.float32) / np.float32(255.0)}
    for kind in self.tasks:
      path = self._paths[kind][index]
      out[kind] = getattr(self, f"_read_{kind}")(index, path, hw)
    return out

  def load(self, index: int) -> dict[str, np.ndarray]:
    """Example ``index`` fitted to ``image_shape``: ``geometry.fit(self.read(index), ...)``.

    Returns:
      the maps of ``read`` at [H, W, ...] and ``box`` int32 [4] (top, left, h, w), where the
      native ground truth lies on the canvas (``mtjax.data.geometry``): resize / train every map
      resized, box the whole canvas; resize / eval the image resized, the ground truth at the
      top-left corner with each task's ignore value around it; pad: everything centred.

    Thread-safe (``read``; ``geometry.fit`` is pure NumPy / OpenCV).

    Raises:
      IndexError, ValueError: as ``read``.
    """
    return geometry_lib.fit(
        self.read(index),
        size=self.image_shape,
        geometry=self._geometry,
        role=self._role,
        tasks=self.tasks,
        normal_interpolation=self._normal_interpolation,
    )

  # --- per-format decoding -----------------------------------------------------------------------

  def _check_decoded(self, path: epath.Path, array: np.ndarray, shape: tuple[int, ...]) -> None:
    if array.shape != shape:
      raise ValueError(
          f"NYUD-MT file {path} decodes to shape {array.shape}; expected {shape} (as on "
          f"construction) in {self._layout}."
      )

  def _read_npy(self, kind: str, index: int, path: epath.Path) -> np.ndarray:
    try:
      return files.read_data(path, self._npy[kind][index], "NYUD-MT")
    except OSError as e:
      raise ValueError(
          f"NYUD-MT file {path} is not readable ({e}); expected {self._layout}."
      ) from e

  def _loadmat(self, kind: str, path: epath.Path, hw: tuple[int, int]) -> np.ndarray:
    data = files.mat_variable(path, _MAT_KEYS[kind], "NYUD-MT", self._layout)
    self._check_decoded(path, data, hw)
    return data

  def _read_semseg(self, index: int, path: epath.Path, hw: tuple[int, int]) -> np.ndarray:
    if self._formats["semseg"] == "mat":
      raw = self._loadmat("semseg", path, hw)
    else:
      # Palette indices for a "P" png, as the references read it.
      raw = files.decode_image(path, None, "NYUD-MT", self._layout)
      self._check_decoded(path, raw, hw)
    bad = ~np.isin(raw, np.arange(NUM_CLASSES + 1))
    if bad.any():
      raise ValueError(
          f"NYUD-MT file {path} has {int(bad.sum())} semseg values outside the integers "
          f"0..{NUM_CLASSES} (e.g. {np.unique(raw[bad])[:5].tolist()}); expected 0 = unlabelled, "
          f"1..{NUM_CLASSES} = NYU-40 classes in {self._layout}."
      )
    return raw.astype(np.int32) - 1  # 0 (unlabelled) -> −1, c -> c − 1.

  def _read_depth(self, index: int, path: epath.Path, hw: tuple[int, int]) -> np.ndarray:
    if self._formats["depth"] == "mat":
      raw = self._loadmat("depth", path, hw)
    else:
      raw = self._read_npy("depth", index, path)
    depth = raw.astype(np.float32).reshape(hw + (1,))
    bad = ~(np.isfinite(depth) & (depth >= 0))
    if bad.any():
      raise ValueError(
          f"NYUD-MT file {path} has {int(bad.sum())} negative or non-finite depths (e.g. "
          f"{depth[bad].flat[0]}); expected metres >= 0, 0 = invalid, in {self._layout}."
      )
    return depth

  def _read_normal(self, index: int, path: epath.Path, hw: tuple[int, int]) -> np.ndarray:
    if self._formats["normal"] != "npy":
      raw = files.decode_image(path, None, "NYUD-MT", self._layout)
      self._check_decoded(path, raw, hw + (3,))
      return (2.0 * raw.astype(np.float32) / np.float32(255.0) - 1.0).astype(np.float32)
    normal = self._read_npy("normal", index, path).astype(np.float32)
    bad = ~(np.isfinite(normal) & (np.abs(normal) <= 1.0 + NORMAL_TOLERANCE))
    if bad.any():
      raise ValueError(
          f"NYUD-MT file {path} has {int(bad.sum())} normal components outside [-1, 1] "
          f"(tolerance {NORMAL_TOLERANCE}) or non-finite (e.g. {normal[bad].flat[0]}); expected "
          f"vectors in [-1, 1], all-zero = invalid, in {self._layout}."
      )
    return np.clip(normal, -1.0, 1.0)

  def _read_edge(self, index: int, path: epath.Path, hw: tuple[int, int]) -> np.ndarray:
    if self._formats["edge"] == "npy":
      raw, values = self._read_npy("edge", index, path), (0, 1)
    else:
      raw, values = files.decode_image(path, None, "NYUD-MT", self._layout), (0, 255)
      self._check_decoded(path, raw, hw)
    bad = ~np.isin(raw, values)
    if bad.any():
      raise ValueError(
          f"NYUD-MT file {path} has {int(bad.sum())} edge values outside {set(values)} (e.g. "
          f"{np.unique(raw[bad])[:5].tolist()}); expected {values[0]} = no edge, {values[1]} = "
          f"edge in {self._layout}."
      )
    return (raw.astype(np.float32) / np.float32(values[1])).reshape(hw + (1,))


def _nested_hint(root: epath.Path) -> str:
  """A hint when ``root`` holds the dataset one level down (``NYUD_MT/``, ``NYUDv2/``)."""
  try:
    nested = sorted(
        p for p in root.iterdir() if (p / "gt_sets").is_dir() or (p / "images").is_dir()
    )
  except OSError:
    return ""
  return f" (but {nested[0]} holds the dataset folders: set data_dir to it)" if nested else ""
