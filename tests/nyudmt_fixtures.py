"""Tiny NYUD-MT datasets in each archive's exact on-disk format (``mtjax.data.nyudmt``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

FOLDERS = ("images", "segmentation", "depth", "normals", "edge")


def _png(path: Path, array: np.ndarray) -> None:
  Image.fromarray(array).save(path, format="PNG")


def _jpg(path: Path, array: np.ndarray) -> None:
  Image.fromarray(array).save(path, format="JPEG", quality=95)


def make_nyudmt_layout(
    root,
    archive: str = "mtinet",
    splits: Mapping[str, int] | None = None,
    hw: tuple[int, int] = (12, 16),
    seed: int = 0,
    size_jitter: int = 0,
) -> Path:
  """Writes a random NYUD-MT dataset in ``archive``'s format under ``root`` and returns ``root``.

  Layout: ``root/gt_sets/{split}.txt`` (4-digit 1-based ids, disjoint between splits, e.g.
  "0003") and per id ``images/``, ``segmentation/``, ``depth/``, ``normals/``, ``edge/`` files
  in the archive's formats and encodings:

  - mtinet: images jpg (RGB); segmentation png uint8 mode L, 0 unlabelled (~10%) / 1..40;
    depth npy float32 [h, w] metres in [0.5, 10), ~10% 0 (invalid); normals npy float32
    [h, w, 3] unit vectors, ~10% all-zero (invalid); edge npy float32 [h, w] in {0, 1}.
  - atrc: images png; segmentation png as mtinet; depth npy as mtinet; normals png RGB uint8
    (2 v / 255 − 1 encoding); edge png mode L in {0, 255}.
  - astmt: images jpg; segmentation .mat variable ``segmentation`` uint8 [h, w] 0..40; depth
    .mat variable ``depth`` float64 [h, w] metres as mtinet; normals jpg RGB; edge png as atrc.

  Args:
    root: directory to write into (created if missing), e.g. pytest's ``tmp_path``.
    archive: "mtinet" | "atrc" | "astmt".
    splits: split name -> number of ids; default ``{"train": 3, "val": 2}``.
    hw: (h, w) of every example, or the largest when ``size_jitter`` > 0.
    seed: seed of the contents, ids and sizes.
    size_jitter: > 0: each example's h and w are drawn from [hw − size_jitter, hw] (so every
      example fits a canvas of ``hw``).
  """
  if archive not in ("mtinet", "atrc", "astmt"):
    raise ValueError(f"archive={archive!r}")
  root = Path(root)
  splits = {"train": 3, "val": 2} if splits is None else dict(splits)
  rng = np.random.default_rng(seed)
  for folder in (*FOLDERS, "gt_sets"):
    (root / folder).mkdir(parents=True, exist_ok=True)
  numbers = rng.permutation(sum(splits.values())) + 1
  start = 0
  for split, n in splits.items():
    ids = [f"{k:04d}" for k in sorted(numbers[start : start + n])]
    start += n
    (root / "gt_sets" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    for i in ids:
      h = hw[0] - int(rng.integers(0, size_jitter + 1))
      w = hw[1] - int(rng.integers(0, size_jitter + 1))
      _write_example(root, archive, i, (h, w), rng)
  return root


def _write_example(root: Path, archive: str, i: str, hw: tuple[int, int], rng) -> None:
  h, w = hw
  image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
  semseg = np.where(rng.random((h, w)) < 0.1, 0, rng.integers(1, 41, (h, w))).astype(np.uint8)
  depth = np.where(rng.random((h, w)) < 0.1, 0.0, rng.uniform(0.5, 10.0, (h, w)))
  normal = rng.normal(size=(h, w, 3))
  normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
  normal[rng.random((h, w)) < 0.1] = 0.0
  edge = (rng.random((h, w)) < 0.2).astype(np.uint8)
  normal_u8 = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
  if archive == "mtinet":
    _jpg(root / "images" / f"{i}.jpg", image)
    _png(root / "segmentation" / f"{i}.png", semseg)
    np.save(root / "depth" / f"{i}.npy", depth.astype(np.float32))
    np.save(root / "normals" / f"{i}.npy", normal.astype(np.float32))
    np.save(root / "edge" / f"{i}.npy", edge.astype(np.float32))
  elif archive == "atrc":
    _png(root / "images" / f"{i}.png", image)
    _png(root / "segmentation" / f"{i}.png", semseg)
    np.save(root / "depth" / f"{i}.npy", depth.astype(np.float32))
    _png(root / "normals" / f"{i}.png", normal_u8)
    _png(root / "edge" / f"{i}.png", edge * np.uint8(255))
  else:
    _jpg(root / "images" / f"{i}.jpg", image)
    scipy.io.savemat(root / "segmentation" / f"{i}.mat", {"segmentation": semseg})
    scipy.io.savemat(root / "depth" / f"{i}.mat", {"depth": depth.astype(np.float64)})
    _jpg(root / "normals" / f"{i}.jpg", normal_u8)
    _png(root / "edge" / f"{i}.png", edge * np.uint8(255))
