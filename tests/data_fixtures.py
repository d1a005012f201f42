"""Tiny on-disk datasets for tests (``from tests.data_fixtures import make_nyuv2_layout``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def make_nyuv2_layout(root, splits=None, hw=(16, 24), seed=0) -> Path:
  """Writes a random NYUv2 dataset in the MTAN/MTPSL layout and returns ``root``.

  Layout: ``root/{split}/{image,label,depth,normal}/{i}.npy``, float32, i = 0..N-1, with
  image [H, W, 3] uniform in [0, 1]; label [H, W] class ids 0..12 with ~10% -1 (ignore);
  depth [H, W, 1] metres in [0.5, 10) with ~10% 0 (invalid); normal [H, W, 3] unit vectors
  with ~10% all-zero (invalid) pixels. Every example differs (seeded from ``seed``).

  Args:
    root: directory to write into (created if missing), e.g. pytest's ``tmp_path``.
    splits: split name -> number of examples; default ``{"train": 5, "val": 3}``.
    hw: (H, W).
    seed: seed of the random contents.
  """
  root = Path(root)
  splits = {"train": 5, "val": 3} if splits is None else splits
  rng = np.random.default_rng(seed)
  h, w = hw
  for split, n in splits.items():
    for modality in ("image", "label", "depth", "normal"):
      (root / split / modality).mkdir(parents=True, exist_ok=True)
    for i in range(n):
      invalid = rng.random((h, w)) < 0.1
      label = np.where(rng.random((h, w)) < 0.1, -1, rng.integers(0, 13, (h, w)))
      depth = np.where(invalid, 0.0, rng.uniform(0.5, 10.0, (h, w)))[..., None]
      normal = rng.normal(size=(h, w, 3))
      normal = np.where(
          invalid[..., None], 0.0, normal / np.linalg.norm(normal, axis=-1, keepdims=True)
      )
      arrays = {"image": rng.random((h, w, 3)), "label": label, "depth": depth, "normal": normal}
      for modality, array in arrays.items():
        np.save(root / split / modality / f"{i}.npy", array.astype(np.float32))
  return root


def make_cityscapes_layout(root, splits=None, hw=(8, 16), seed=0) -> Path:
  """Writes a random Cityscapes dataset in the MTAN preprocessed layout and returns ``root``.

  Layout: ``root/{split}/{image,label_7,depth}/{i}.npy``, float32, i = 0..N-1, with image
  [H, W, 3] uniform in [0, 1]; label_7 [H, W] class ids 0..6 with ~10% -1 (ignore); depth
  [H, W, 1] disparity in [0.001, 0.5) with ~20% 0 (invalid). Every example differs (seeded from
  ``seed``).

  Args:
    root: directory to write into (created if missing), e.g. pytest's ``tmp_path``.
    splits: split name -> number of examples; default ``{"train": 5, "val": 3}``.
    hw: (H, W).
    seed: seed of the random contents.
  """
  root = Path(root)
  splits = {"train": 5, "val": 3} if splits is None else splits
  rng = np.random.default_rng(seed)
  h, w = hw
  for split, n in splits.items():
    for folder in ("image", "label_7", "depth"):
      (root / split / folder).mkdir(parents=True, exist_ok=True)
    for i in range(n):
      label = np.where(rng.random((h, w)) < 0.1, -1, rng.integers(0, 7, (h, w)))
      depth = np.where(rng.random((h, w)) < 0.2, 0.0, rng.uniform(0.001, 0.5, (h, w)))[..., None]
      arrays = {"image": rng.random((h, w, 3)), "label_7": label, "depth": depth}
      for folder, array in arrays.items():
        np.save(root / split / folder / f"{i}.npy", array.astype(np.float32))
  return root
