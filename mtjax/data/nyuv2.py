"""NYUv2 in the MTAN / MTPSL preprocessed layout, read directly from its ``.npy`` files, on a local
disk or in a bucket (``gs://``; ``mtjax.fileio``).

Layout (docs/metrics.md, "NYUv2, MTAN/MTPSL preprocessed"):
``root/{split}/{image,label,depth,normal}/{i}.npy`` for i = 0..N-1, 288x384 (795 train / 654 val).
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
from etils import epath

from mtjax import fileio
from mtjax.data import files

NYUV2_TASKS = ("semseg", "depth", "normal")
NUM_CLASSES = 13
IMAGE_SHAPE = (288, 384)

# Directory name -> trailing (channel) dims after H, W; the image fixes H and W for the rest.
_MODALITIES = {"image": (3,), "label": (), "depth": (1,), "normal": (3,)}
_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_NPY_NAME = re.compile(r"(\d+)\.npy")


def _layout(split: str) -> str:
  return f"{split}/{{image,label,depth,normal}}/{{i}}.npy, {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]}"


@dataclasses.dataclass(frozen=True)
class NYUv2Split:
  """One split of MTAN/MTPSL-preprocessed NYUv2, validated on construction.

  Construction checks the whole split from the ``.npy`` headers only (no pixel is read; the
  headers are read by 16 threads, which a bucket's latency needs): the
  four modality folders exist, each holds exactly ``0.npy .. N-1.npy`` with the same N > 0, and
  every file is float32/float64 with shape image ``[H, W, 3]``, label ``[H, W]``, depth
  ``[H, W, 1]``, normal ``[H, W, 3]``, where H, W come from ``image/0.npy`` (288x384 for the
  published data). Reference: docs/metrics.md, "NYUv2, MTAN/MTPSL
  preprocessed"; MTPSL ``dataset/nyuv2ssl.py``.

  Args:
    data_dir: dataset root holding ``{split}/``: a local path or a ``gs://`` URL.
    split: split folder name, e.g. ``"train"`` or ``"val"``.

  Attributes:
    num_examples: N, the number of examples in the split.
    tasks: ``NYUV2_TASKS`` = ("semseg", "depth", "normal").
    image_shape: ``(H, W)``.

  Raises:
    FileNotFoundError: ``data_dir``, the split folder or a modality folder is missing.
    ValueError: empty split, file names not exactly ``0.npy .. N-1.npy``, counts differing
      between modalities, an unreadable file, or a wrong shape or dtype. Every message names the
      offending path and the expected layout.
  """

  data_dir: epath.Path | str
  split: str
  num_examples: int = dataclasses.field(init=False)
  image_shape: tuple[int, int] = dataclasses.field(init=False)
  tasks: tuple[str, ...] = dataclasses.field(init=False, default=NYUV2_TASKS)
  # modality -> each file's header, read on construction.
  _files: dict[str, tuple[files.Header, ...]] = dataclasses.field(
      init=False, repr=False, compare=False
  )

  def __post_init__(self):
    root = fileio.as_path(self.data_dir)
    object.__setattr__(self, "data_dir", root)
    layout = _layout(self.split)
    if not root.is_dir():
      raise FileNotFoundError(f"NYUv2 data_dir {root} does not exist; expected {layout}.")
    split_dir = root / self.split
    if not split_dir.is_dir():
      raise FileNotFoundError(f"NYUv2 split folder {split_dir} does not exist; expected {layout}.")

    num = None
    for modality in _MODALITIES:
      folder = split_dir / modality
      if not folder.is_dir():
        raise FileNotFoundError(f"NYUv2 folder {folder} does not exist; expected {layout}.")
      names = [p.name for p in folder.glob("*.npy")]
      if not names:
        raise ValueError(f"NYUv2 split is empty: no .npy files in {folder}; expected {layout}.")
      ids = sorted(int(m.group(1)) for m in map(_NPY_NAME.fullmatch, names) if m)
      if len(ids) != len(names) or ids != list(range(len(ids))):
        odd = sorted(set(names) - {f"{i}.npy" for i in range(len(names))})[:3]
        raise ValueError(
            f"NYUv2 files in {folder} are not exactly 0.npy..{len(names) - 1}.npy "
            f"(unexpected: {odd}); expected {layout}."
        )
      if num is not None and len(ids) != num:
        raise ValueError(
            f"NYUv2 {folder} has {len(ids)} files but {split_dir / 'image'} has {num}; "
            f"expected the same count in every modality of {layout}."
        )
      num = len(ids)
    object.__setattr__(self, "num_examples", num)

    shape = files.read_header(split_dir / "image" / "0.npy", "NYUv2", layout).shape
    if len(shape) != 3 or shape[-1] != 3:
      raise ValueError(
          f"NYUv2 file {split_dir / 'image' / '0.npy'} has shape {shape}; expected [H, W, 3] in {layout}."
      )
    object.__setattr__(self, "image_shape", tuple(int(d) for d in shape[:2]))
    jobs = [
        (split_dir / modality / f"{i}.npy", self.image_shape + trailing)
        for modality, trailing in _MODALITIES.items()
        for i in range(num)
    ]
    checked = files.map_in_threads(lambda path, shape: _check(path, shape, layout), jobs)
    headers = {m: tuple(checked[k * num : (k + 1) * num]) for k, m in enumerate(_MODALITIES)}
    object.__setattr__(self, "_files", headers)

  has_instances = False  # No instance ids: config.regions.source="instance" is refused.

  def example_id(self, index: int) -> str:
    """The stable id of example ``index`` (region maps are keyed by it): the file index, ``"7"``."""
    return str(files.check_index(index, self.num_examples, f"NYUv2 {self.split}"))

  def load(self, index: int) -> dict[str, np.ndarray]:
    """Loads example ``index`` in the conventions of SPEC.md.

    Returns:
      dict with ``image`` float32 [H, W, 3] in [0, 1]; ``semseg`` int32 [H, W], classes
      0..12, -1 = ignore; ``depth`` float32 [H, W, 1] metres, 0 = invalid; ``normal``
      float32 [H, W, 3] unit vectors, all-zero = invalid.

    Thread-safe (tf.data calls it from parallel threads): each file's bytes are read at the
    header offset recorded on construction (``mtjax.data.files``).

    Raises:
      IndexError: ``index`` outside [0, num_examples).
      ValueError: a file shorter than its header promises (named).
    """
    index = files.check_index(index, self.num_examples, f"NYUv2 {self.split}")
    split_dir = self.data_dir / self.split

    def read(modality):
      path = split_dir / modality / f"{index}.npy"
      return files.read_data(path, self._files[modality][index], "NYUv2")

    return {
        "image": read("image").astype(np.float32, copy=False),
        "semseg": np.rint(read("label")).astype(np.int32),
        "depth": read("depth").astype(np.float32, copy=False),
        "normal": read("normal").astype(np.float32, copy=False),
    }


def _check(path: epath.Path, expected: tuple[int, ...], layout: str) -> files.Header:
  """Checks a .npy's dtype and shape; returns its header for ``load``."""
  header = files.read_header(path, "NYUv2", layout)
  if header.dtype not in _FLOAT_DTYPES:
    raise ValueError(
        f"NYUv2 file {path} has dtype {header.dtype}; expected float32 or float64 in {layout}."
    )
  if header.shape != expected:
    raise ValueError(
        f"NYUv2 file {path} has shape {header.shape}; expected {expected} in {layout}."
    )
  return header
