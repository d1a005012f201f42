"""PASCAL-Context multi-task (PASCAL_MT), read directly from the archive's own files.

Layout under ``data_dir`` (the ``PASCAL_MT`` folder of ``PASCAL_MT.tgz``; docs/datasets.md,
"PASCAL-Context multi-task"), one file per id and task:

  ImageSets/Context/{split}.txt        the split's ids, one a line (e.g. ``2008_000002``)
  JPEGImages/{id}.jpg                  the image
  semseg/VOC12/{id}.png, else semseg/pascal-context/{id}.png     semseg, 8-bit 2-D
  human_parts/{id}.mat                 PASCAL-Part annotation struct ``anno``
  sal_distill/{id}.png                 distilled saliency, 8-bit 2-D
  normals_distill/{id}.png             distilled normals, 8-bit RGB
  pascal-context/trainval/{id}.mat     ``LabelMap``: the 459-class PASCAL-Context labels
  db_info/nyu_classes.json, db_info/context_classes.json         the class-name tables (normals)

What each task is, verified in the references' loaders (MTI = SimonVandenhende/
Multi-Task-Learning-PyTorch @ ed3d9ac, data/pascal_context.py; INV = prismformore/
Multi-Task-Transformer @ 870c6be, InvPT/data/pascal_context.py; ATRC = brdav/atrc @ 3525804,
src/data/pascal_context.py, the same code):

- image: ``PIL.Image.open(...).convert('RGB')`` [MTI 286-288; INV 287-289]; here / 255, float32.
- split ids: ``ImageSets/Context/{split}.txt`` read with ``splitlines`` [MTI 144, 151-152].
- semseg: the VOC12 png when it exists, else the pascal-context png [MTI 360-371; INV 361-372],
  decoded with ``np.array(Image.open(...))`` (palette indices of a "P" png, not colours) [MTI
  334-337; INV 335-338]. 21 classes, 0 background + the 20 VOC classes in VOC order [MTI 56-66].
  255 is ignored by the loss (``NLLLoss(ignore_index=255)``, MTI losses/loss_functions.py:24) and
  by the metric (``valid = gt != 255``, MTI evaluation/eval_semseg.py:54); it becomes −1 here.
  Any other value above 20 is an error (it would be an out-of-range class in the references).
- human_parts: ``loadmat(...)['anno'][0][0][1][0]`` = the objects; an object's field 1 is its
  class index (15 = person), field 2 its instance mask, field 3 its parts, each (name, mask)
  [MTI 297-332; INV 298-333]. Part names map to 6 groups, the references' ``HUMAN_PART[6]``
  [MTI 46-49]: 1 head (hair, head, l/r ear, l/r eyebrow, l/r eye, mouth, nose), 2 torso (torso,
  neck), 3 upper arms, 4 lower arms and hands, 5 upper legs, 6 lower legs and feet; 0 background.
  Every person with at least one part is painted, parts in file order, a later part overwriting an
  earlier one [MTI 305-323]. The gate: an image counts as having human parts when one of its
  objects is a person with a mask of positive area [MTI 199-207 with ``area_thres=0``, 391-404].
  The references keep that per-id list in ``ImageSets/Parts/{split}.txt``, which they WRITE into
  the dataset folder when it is missing [MTI 117-118, 195-197, 406-411; INV 407-412]. This
  reader neither reads nor writes that file: it computes the same gate from the ``.mat`` it has
  just loaded (the file, freshly written, holds exactly that). An image without a painted part
  (no person, no person with parts, or all parts empty) is all ignore (−1): the references return
  zeros and ``AddIgnoreRegions`` turns an all-background map into 255 [MTI
  data/custom_transforms.py:258-262; INV data/transforms.py:291-294]. (They test this after
  augmentation and resizing; here it is tested at native size.)
- saliency: ``png / 255 > 0.5`` [MTI 354-358; INV 355-359], float32 {0, 1}, [h, w, 1].
- normal: ``2 v / 255 − 1`` of the RGB png, kept only where the ``LabelMap`` class is one of the
  "valid" classes, zero elsewhere [MTI 339-352; INV 340-353]. The valid classes are the
  ``context_classes.json`` ids (name -> 1..459) of every name of ``nyu_classes.json`` (a
  name-keyed table; its keys are iterated) that is also a context name and is not ``unknown``,
  plus the id of ``tvmonitor`` [MTI 125-136; INV 126-137]: 170 classes with the references' own
  JSONs (counted from MTI data/db_info/*.json; INV's copies are the same git blobs). Those JSONs ship with the references' CODE
  (``PROJECT_ROOT_DIR/data/db_info`` [MTI 115, 125-128; INV 116, 126-128]; ATRC
  ``src/data/db_info`` next to its loader), not verifiably with the dataset archive: copy them to
  ``data_dir/db_info/`` or pass ``db_info_dir``. They are read on construction, only when
  "normal" is requested. The kept vectors are re-normalised to unit length here (MTI's normals
  metric normalises the label, evaluation/eval_normals.py:46-49); the all-zero pixels are the
  invalid ones (mtjax's ``normal`` convention; the references' ``AddIgnoreRegions`` marks norm-0
  pixels 255, custom_transforms.py:251-256). A decoded vector is never all-zero (2v/255 − 1 = 0
  has no integer v).
- edge: ``cv2.Laplacian(LabelMap, cv2.CV_64F)`` (default ksize 1, the 4-neighbour kernel,
  BORDER_REFLECT_101), ``|.| > 0``, ``skimage.morphology.thin``, float32 {0, 1} [MTI 290-295; INV
  291-296]; [h, w, 1], no ignore.

The references resize a label whose size differs from the image's [MTI 244-272] or assert equal
sizes [ATRC]; this reader requires equal sizes (ValueError).

Nothing is ever written into ``data_dir``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import cv2
import numpy as np
from etils import epath
from PIL import Image
from skimage import morphology

from mtjax import fileio
from mtjax.data import files
from mtjax.data import geometry as geometry_lib

PASCAL_TASKS = ("semseg", "human_parts", "saliency", "normal", "edge")
NUM_CLASSES = 21
NUM_HUMAN_PARTS = 6
PERSON_CLASS = 15  # PASCAL-Part / VOC class index of "person" [MTI 113].
SEMSEG_IGNORE = 255  # In the semseg pngs [MTI eval_semseg.py:54, loss_functions.py:24].

# PASCAL-Part part name -> part group (1 head, 2 torso, 3 upper arm, 4 lower arm + hand,
# 5 upper leg, 6 lower leg + foot): the references' HUMAN_PART[6] [MTI 46-49].
HUMAN_PART_GROUPS = {
    **dict.fromkeys(
        ("hair", "head", "lear", "rear", "lebrow", "rebrow", "leye", "reye", "mouth", "nose"), 1
    ),
    **dict.fromkeys(("torso", "neck"), 2),
    **dict.fromkeys(("luarm", "ruarm"), 3),
    **dict.fromkeys(("llarm", "rlarm", "lhand", "rhand"), 4),
    **dict.fromkeys(("luleg", "ruleg"), 5),
    **dict.fromkeys(("llleg", "rlleg", "lfoot", "rfoot"), 6),
}

# Where each task's files live: (folder(s), extension).
_SEMSEG_DIRS = ("semseg/VOC12", "semseg/pascal-context")
_TASK_DIRS = {
    "human_parts": ("human_parts", ".mat"),
    "saliency": ("sal_distill", ".png"),
    "normal": ("normals_distill", ".png"),
}
_LABELMAP_DIR = "pascal-context/trainval"  # LabelMap .mat: edge and the normal mask.
_DB_INFO_FILES = ("nyu_classes.json", "context_classes.json")
# Source depths cv2.Laplacian accepts with ddepth CV_64F; others are converted to float64 first
# (exact: the ksize-1 kernel is integer and the ids are small).
_LAPLACIAN_DTYPES = tuple(
    np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32, np.float64)
)


def _layout(split: str) -> str:
  return (
      f"the PASCAL_MT layout: ImageSets/Context/{split}.txt, JPEGImages/{{id}}.jpg, "
      "semseg/{VOC12,pascal-context}/{id}.png, human_parts/{id}.mat, sal_distill/{id}.png, "
      "normals_distill/{id}.png, pascal-context/trainval/{id}.mat (LabelMap), "
      "db_info/{nyu_classes,context_classes}.json"
  )


def normal_valid_classes(nyu_classes, context_classes) -> tuple[int, ...]:
  """The PASCAL-Context class ids whose distilled normals are kept [MTI 125-136].

  Args:
    nyu_classes: the parsed ``nyu_classes.json``: its names are iterated (the keys of the
      published name -> id table; a list of names works too).
    context_classes: the parsed ``context_classes.json``: PASCAL-Context name -> id (1..459).

  Returns:
    the sorted distinct ids: every NYU name that is a context name and not ``"unknown"``, plus
    ``tvmonitor`` (170 ids with the references' files).

  Raises:
    KeyError: ``context_classes`` has no ``"tvmonitor"``.
  """
  ids = [
      context_classes[name] for name in nyu_classes if name in context_classes and name != "unknown"
  ]
  ids.append(context_classes["tvmonitor"])
  return tuple(sorted({int(i) for i in ids}))


class PascalContextSplit:
  """One split of PASCAL-Context multi-task, validated on construction (module docstring).

  Construction reads the split's id list and the folder listings, and checks that every id has
  the files of the requested tasks (and of none other: a task not requested may lack its
  folder); it opens the headers of the first example's files (image format and size, png
  mode and size, the ``.mat`` variables' names and shapes). Pixel values, and the headers of the
  other examples, are checked by ``read``. Nothing is written into ``data_dir``.

  Args:
    data_dir: the ``PASCAL_MT`` folder.
    split: ``"train"`` or ``"val"`` (any name with an ``ImageSets/Context/{split}.txt``).
    tasks: a non-empty subset of ``PASCAL_TASKS``; kept in ``PASCAL_TASKS`` order.
    size: (H, W) of the canvas ``load`` fits examples to (``image_shape``).
    geometry: ``"resize"`` | ``"pad"`` (``mtjax.data.geometry``).
    role: ``"train"`` | ``"eval"``.
    normal_interpolation: ``"cubic"`` (MTI-Net) | ``"nearest"`` (MT-CP), for ``"resize"``.
    db_info_dir: the folder of ``nyu_classes.json`` and ``context_classes.json`` (needed for
      "normal" only); default ``data_dir/db_info``.

  Attributes:
    num_examples: the number of ids in the split.
    tasks: the requested tasks, in ``PASCAL_TASKS`` order.
    label_tasks: ``PASCAL_TASKS``, every task the dataset labels.
    image_shape: ``size``.
    split: the split name.
    has_instances: False (no instance ids for ``config.regions.source="instance"``).
    normal_classes: the kept normal classes (``normal_valid_classes``), () without "normal".

  Raises:
    ValueError: unknown / repeated / no tasks, bad size, geometry, role or
      normal_interpolation; an empty or repeated-id split file; a first example whose header
      is wrong (not a JPEG / png / ``.mat`` of the expected mode, variables or size); a
      ``db_info`` JSON that is unreadable or lacks ``tvmonitor``.
    FileNotFoundError: ``data_dir``, the split file, a needed folder or a needed file of some id
      (the message names the first missing path and how many are missing).
    Every message names the offending path and the expected layout.
  """

  has_instances = False
  has_box = True  # load() returns box (mtjax.data.geometry); the pipeline batches it.
  label_tasks = PASCAL_TASKS

  def __init__(
      self,
      data_dir: str | os.PathLike,
      split: str,
      *,
      tasks: Sequence[str] = PASCAL_TASKS,
      size: tuple[int, int] = (512, 512),
      geometry: str = "resize",
      role: str = "train",
      normal_interpolation: str = "cubic",
      db_info_dir: str | os.PathLike | None = None,
  ):
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in PASCAL_TASKS]
    if not tasks or unknown or len(set(tasks)) != len(tasks):
      raise ValueError(
          f"PASCAL-Context tasks={tasks!r}: expected a non-empty list of distinct names from "
          f"{PASCAL_TASKS}; unknown: {unknown}"
      )
    if len(size) != 2 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in size
    ):
      raise ValueError(f"PASCAL-Context size={size!r}: expected (H, W), two positive ints")
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
    self.tasks = tuple(t for t in PASCAL_TASKS if t in tasks)
    self.image_shape = (int(size[0]), int(size[1]))
    self._geometry, self._role, self._normal_interpolation = geometry, role, normal_interpolation
    self._layout = layout = _layout(split)

    if not root.is_dir():
      raise FileNotFoundError(f"PASCAL-Context data_dir {root} does not exist; expected {layout}.")
    split_file = root / "ImageSets" / "Context" / f"{split}.txt"
    if not split_file.is_file():
      raise FileNotFoundError(
          f"PASCAL-Context split file {split_file} does not exist; expected {layout}."
      )
    ids = [line.strip() for line in split_file.read_text().splitlines()]
    ids = [i for i in ids if i]
    if not ids:
      raise ValueError(f"PASCAL-Context split is empty: no ids in {split_file}; expected {layout}.")
    repeated = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
    if repeated:
      raise ValueError(
          f"PASCAL-Context split file {split_file} repeats ids {repeated[:3]}; expected one id "
          f"a line in {layout}."
      )
    self._ids = tuple(ids)
    self.num_examples = len(ids)

    # Per needed file kind: one path per id. A folder is listed once (not stat'ed per id).
    self._paths: dict[str, tuple[epath.Path, ...]] = {}
    self._paths["image"] = self._files("JPEGImages", ".jpg")
    if "semseg" in self.tasks:
      self._paths["semseg"] = self._semseg_files()
    for task, (folder, ext) in _TASK_DIRS.items():
      if task in self.tasks:
        self._paths[task] = self._files(folder, ext)
    if "edge" in self.tasks or "normal" in self.tasks:
      self._paths["labelmap"] = self._files(_LABELMAP_DIR, ".mat")

    self.normal_classes: tuple[int, ...] = ()
    if "normal" in self.tasks:
      db_info = root / "db_info" if db_info_dir is None else fileio.as_path(db_info_dir)
      self.normal_classes = self._read_db_info(db_info)
    self._normal_classes = np.asarray(self.normal_classes, np.int64)

    self._check_headers(0)

  # --- construction helpers -------------------------------------------------------------------

  def _listing(self, folder: epath.Path) -> set[str]:
    if not folder.is_dir():
      raise FileNotFoundError(
          f"PASCAL-Context folder {folder} does not exist; expected {self._layout}."
      )
    return files.list_names(folder)

  def _files(self, folder: str, ext: str) -> tuple[epath.Path, ...]:
    path = self.data_dir / folder
    names = self._listing(path)
    missing = [i for i in self._ids if i + ext not in names]
    if missing:
      raise FileNotFoundError(
          f"PASCAL-Context file {path / (missing[0] + ext)} does not exist ({len(missing)} of "
          f"the {self.num_examples} {self.split} ids lack {folder}/{{id}}{ext}); expected "
          f"{self._layout}."
      )
    return tuple(path / (i + ext) for i in self._ids)

  def _semseg_files(self) -> tuple[epath.Path, ...]:
    folders = [self.data_dir / d for d in _SEMSEG_DIRS]
    if not any(f.is_dir() for f in folders):
      raise FileNotFoundError(
          f"PASCAL-Context folders {folders[0]} and {folders[1]} do not exist; expected "
          f"{self._layout}."
      )
    listings = [files.list_names(f) if f.is_dir() else set() for f in folders]
    paths, missing = [], []
    for i in self._ids:
      found = [f for f, names in zip(folders, listings) if i + ".png" in names]
      if found:
        paths.append(found[0] / (i + ".png"))  # VOC12 first [MTI 360-371].
      else:
        missing.append(i)
    if missing:
      raise FileNotFoundError(
          f"PASCAL-Context semseg file {folders[0] / (missing[0] + '.png')} does not exist, nor "
          f"{folders[1] / (missing[0] + '.png')} ({len(missing)} of the {self.num_examples} "
          f"{self.split} ids have neither); expected {self._layout}."
      )
    return tuple(paths)

  def _read_db_info(self, folder: epath.Path) -> tuple[int, ...]:
    tables = []
    for name in _DB_INFO_FILES:
      path = folder / name
      if not path.is_file():
        raise FileNotFoundError(
            f"PASCAL-Context class table {path} does not exist (needed for the normal task's "
            "valid classes). The references ship db_info/nyu_classes.json and "
            "db_info/context_classes.json with their code (Multi-Task-Learning-PyTorch "
            "data/db_info/, InvPT data/db_info/): copy them to data_dir/db_info/ or pass "
            f"db_info_dir; expected {self._layout}."
        )
      try:
        table = json.loads(path.read_text())
      except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(
            f"PASCAL-Context class table {path} is not readable JSON ({e}); expected "
            f"{self._layout}."
        ) from e
      tables.append(table)
    nyu, context = tables
    if not isinstance(context, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in context.values()
    ):
      raise ValueError(
          f"PASCAL-Context class table {folder / _DB_INFO_FILES[1]} is not a name -> int id "
          f"object; expected {self._layout}."
      )
    if not isinstance(nyu, (dict, list)):
      raise ValueError(  # noqa: TRY004 (a bad file, not a bad argument)
          f"PASCAL-Context class table {folder / _DB_INFO_FILES[0]} is neither a name-keyed "
          f"object nor a list of names; expected {self._layout}."
      )
    if "tvmonitor" not in context:
      raise ValueError(
          f"PASCAL-Context class table {folder / _DB_INFO_FILES[1]} has no 'tvmonitor' "
          f"(the references add its id to the normal classes); expected {self._layout}."
      )
    return normal_valid_classes(nyu, context)

  def _check_headers(self, index: int) -> tuple[int, int]:
    """Checks example ``index``'s file headers (no pixel decoded); returns the image (h, w)."""
    path = self._paths["image"][index]
    try:
      with files.open_image(path) as im:
        fmt, (w, h) = im.format, im.size
    except (OSError, Image.DecompressionBombError) as e:
      raise ValueError(
          f"PASCAL-Context file {path} is not a readable image ({e}); expected {self._layout}."
      ) from e
    if fmt != "JPEG":
      raise ValueError(
          f"PASCAL-Context file {path} is a {fmt}, not a JPEG; expected {self._layout}."
      )
    pngs = {"semseg": ("L", "P"), "saliency": ("L", "P"), "normal": ("RGB",)}
    for task, modes in pngs.items():
      if task in self._paths:
        self._png_header(self._paths[task][index], modes, (h, w))
    if "labelmap" in self._paths:
      self._mat_header(self._paths["labelmap"][index], "LabelMap", (h, w))
    if "human_parts" in self._paths:
      self._mat_header(self._paths["human_parts"][index], "anno", None)
    return h, w

  def _png_header(self, path: epath.Path, modes: tuple[str, ...], hw: tuple[int, int]) -> None:
    try:
      with files.open_image(path) as im:
        fmt, mode, (w, h) = im.format, im.mode, im.size
    except (OSError, Image.DecompressionBombError) as e:
      raise ValueError(
          f"PASCAL-Context file {path} is not a readable png ({e}); expected {self._layout}."
      ) from e
    if fmt != "PNG" or mode not in modes:
      raise ValueError(
          f"PASCAL-Context file {path} is a {fmt} of mode {mode}; expected an 8-bit png of mode "
          f"{' or '.join(modes)} in {self._layout}."
      )
    if (h, w) != hw:
      raise ValueError(
          f"PASCAL-Context file {path} is {h}x{w} but its image is {hw[0]}x{hw[1]}; expected "
          f"equal sizes in {self._layout}."
      )

  def _mat_header(self, path: epath.Path, variable: str, hw: tuple[int, int] | None) -> None:
    try:
      variables = {name: shape for name, shape, _ in files.whosmat(path)}
    except Exception as e:  # scipy raises several types for a corrupt file.
      raise ValueError(
          f"PASCAL-Context file {path} is not a readable .mat ({e}); expected {self._layout}."
      ) from e
    if variable not in variables:
      raise ValueError(
          f"PASCAL-Context file {path} has no variable {variable!r} (has {sorted(variables)}); "
          f"expected {self._layout}."
      )
    if hw is not None and tuple(variables[variable]) != hw:
      raise ValueError(
          f"PASCAL-Context file {path} has {variable} of shape {tuple(variables[variable])} but "
          f"its image is {hw[0]}x{hw[1]}; expected equal sizes in {self._layout}."
      )

  # --- reading -----------------------------------------------------------------------------------

  def example_id(self, index: int) -> str:
    """The id of example ``index``, its file stem (e.g. ``"2008_000002"``).

    Raises:
      IndexError: ``index`` outside [0, num_examples).
    """
    return self._ids[files.check_index(index, self.num_examples, f"PASCAL-Context {self.split}")]

  def read(self, index: int) -> dict[str, np.ndarray]:
    """Example ``index`` at its native size (h, w) in mtjax's conventions.

    Returns:
      ``image`` float32 [h, w, 3] in [0, 1]; and per requested task: ``semseg`` int32 [h, w],
      0..20, −1 ignore; ``human_parts`` int32 [h, w], 0..6, all −1 without a painted part;
      ``saliency`` float32 [h, w, 1] in {0, 1}; ``normal`` float32 [h, w, 3], unit vectors on
      the kept classes, all-zero elsewhere; ``edge`` float32 [h, w, 1] in {0, 1}.

    Only the files of the requested tasks are opened. Thread-safe (no shared mutable state).

    Raises:
      IndexError: ``index`` outside [0, num_examples).
      ValueError: a file that is unreadable, of the wrong format or size, a semseg value in
        21..254, a human_parts struct not nested as PASCAL-Part's, or an unknown part name;
        the message names the file.
    """
    index = files.check_index(index, self.num_examples, f"PASCAL-Context {self.split}")
    h, w = self._check_headers(index)
    image = files.decode_image(self._paths["image"][index], "RGB", "PASCAL-Context", self._layout)
    out = {"image": image.astype(np.float32) / np.float32(255.0)}
    if "semseg" in self.tasks:
      out["semseg"] = self._semseg(self._paths["semseg"][index])
    if "human_parts" in self.tasks:
      out["human_parts"] = self._human_parts(self._paths["human_parts"][index], (h, w))
    if "saliency" in self.tasks:
      sal = files.decode_image(self._paths["saliency"][index], None, "PASCAL-Context", self._layout)
      sal = sal.astype(np.float32) / 255.0
      out["saliency"] = (sal > 0.5).astype(np.float32)[..., None]
    labelmap = None
    if "normal" in self.tasks or "edge" in self.tasks:
      labelmap = self._labelmap(self._paths["labelmap"][index])
    if "normal" in self.tasks:
      out["normal"] = self._normal(self._paths["normal"][index], labelmap)
    if "edge" in self.tasks:
      out["edge"] = self._edge(labelmap)
    return out

  def load(self, index: int) -> dict[str, np.ndarray]:
    """Example ``index`` fitted to ``image_shape``: ``geometry.fit(self.read(index), ...)``.

    Returns:
      the maps of ``read`` at [H, W, ...] and ``box`` int32 [4] (top, left, h, w), where the
      native ground truth lies on the canvas (``mtjax.data.geometry``).

    Raises:
      IndexError, ValueError: as ``read``; ValueError from ``geometry.fit`` when an image is
        larger than the canvas under ``pad`` or evaluation ``resize``.
    """
    return geometry_lib.fit(
        self.read(index),
        size=self.image_shape,
        geometry=self._geometry,
        role=self._role,
        tasks=self.tasks,
        normal_interpolation=self._normal_interpolation,
    )

  # --- per-task decoding -------------------------------------------------------------------------

  def _semseg(self, path: epath.Path) -> np.ndarray:
    # Palette indices for a "P" png, as the references read it.
    raw = files.decode_image(path, None, "PASCAL-Context", self._layout)
    if raw.dtype != np.uint8 or raw.ndim != 2:
      raise ValueError(
          f"PASCAL-Context file {path} decodes to {raw.dtype} {raw.shape}; expected 8-bit [h, w] "
          f"class ids in {self._layout}."
      )
    bad = (raw >= NUM_CLASSES) & (raw != SEMSEG_IGNORE)
    if bad.any():
      raise ValueError(
          f"PASCAL-Context file {path} has semseg values {np.unique(raw[bad])[:5].tolist()}; "
          f"expected 0..{NUM_CLASSES - 1} or {SEMSEG_IGNORE} (ignore) in {self._layout}."
      )
    semseg = raw.astype(np.int32)
    semseg[raw == SEMSEG_IGNORE] = -1
    return semseg

  def _labelmap(self, path: epath.Path) -> np.ndarray:
    labels = files.mat_variable(path, "LabelMap", "PASCAL-Context", self._layout)
    numeric = np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)
    if labels.ndim != 2 or not numeric:
      raise ValueError(
          f"PASCAL-Context file {path} has LabelMap {labels.dtype} {labels.shape}; expected "
          f"[h, w] PASCAL-Context class ids in {self._layout}."
      )
    return labels

  def _normal(self, path: epath.Path, labels: np.ndarray) -> np.ndarray:
    raw = files.decode_image(path, None, "PASCAL-Context", self._layout)
    if raw.dtype != np.uint8 or raw.shape != labels.shape + (3,):
      raise ValueError(
          f"PASCAL-Context file {path} decodes to {raw.dtype} {raw.shape}; expected 8-bit RGB "
          f"{labels.shape + (3,)} in {self._layout}."
      )
    normal = 2.0 * raw.astype(np.float32) / 255.0 - 1.0
    normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-12
    keep = np.isin(labels, self._normal_classes)
    return np.where(keep[..., None], normal, 0.0).astype(np.float32)

  @staticmethod
  def _edge(labels: np.ndarray) -> np.ndarray:
    src = labels if labels.dtype in _LAPLACIAN_DTYPES else labels.astype(np.float64)
    laplacian = cv2.Laplacian(src, cv2.CV_64F)  # ksize 1 as the references [MTI 293].
    return morphology.thin(np.abs(laplacian) > 0).astype(np.float32)[..., None]

  def _human_parts(self, path: epath.Path, hw: tuple[int, int]) -> np.ndarray:
    anno = files.mat_variable(path, "anno", "PASCAL-Context", self._layout)
    try:
      objects = anno[0][0][1][0]
      records = [(int(np.asarray(o[1]).ravel()[0]), o[2], o[3]) for o in objects]
    except (IndexError, TypeError, ValueError, KeyError) as e:
      raise ValueError(
          f"PASCAL-Context file {path} is not a PASCAL-Part annotation: anno[0][0][1][0] must "
          f"be the objects, each (class, class_ind, mask, parts) ({e!r}); expected {self._layout}."
      ) from e
    ignore = np.full(hw, -1, np.int32)
    # The gate of the references' ImageSets/Parts list (area_thres 0) [MTI 199-207, 391-404].
    persons = [r for r in records if r[0] == PERSON_CLASS]
    if not any(np.sum(mask) > 0 for _, mask, _ in persons):
      return ignore
    target = np.zeros(hw, np.int32)
    for _, mask, parts in persons:
      if len(parts) == 0:  # A person without part annotation [MTI 308].
        continue
      if np.shape(mask) != hw:
        raise ValueError(
            f"PASCAL-Context file {path} has a person mask of shape {np.shape(mask)} but its "
            f"image is {hw[0]}x{hw[1]}; expected equal sizes in {self._layout}."
        )
      for part in parts[0]:
        try:
          name, part_mask = str(part[0][0]), np.asarray(part[1])
        except (IndexError, TypeError) as e:
          raise ValueError(
              f"PASCAL-Context file {path} has a part that is not (name, mask) ({e!r}); expected "
              f"{self._layout}."
          ) from e
        if name not in HUMAN_PART_GROUPS:
          raise ValueError(
              f"PASCAL-Context file {path} has person part {name!r}; expected one of "
              f"{sorted(HUMAN_PART_GROUPS)} (HUMAN_PART[6] of the references)."
          )
        if part_mask.shape != hw:
          raise ValueError(
              f"PASCAL-Context file {path} has a {name!r} mask of shape {part_mask.shape} but "
              f"its image is {hw[0]}x{hw[1]}; expected equal sizes in {self._layout}."
          )
        target[part_mask.astype(bool)] = HUMAN_PART_GROUPS[name]
    # All background: no painted part, all ignore [MTI custom_transforms.py:258-262].
    return ignore if not target.any() else target
