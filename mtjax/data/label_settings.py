"""Partial-label settings: which task ground truths each training example may use.

Reference: MTPSL (Li et al., "Learning Multiple Dense Prediction Tasks from Partially Annotated
Data", CVPR 2022) ``data/*_settings/{onelabel,randomlabels}.pth``; docs/datasets.md,
"Partial labels".
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import numpy as np
from etils import epath

from mtjax import fileio

SETTINGS = ("full", "onelabel", "randomlabels")


def resolve_label_mask(
    setting: str | os.PathLike,
    *,
    num_examples: int,
    dataset_tasks: Sequence[str],
    tasks: Sequence[str],
    seed: int,
) -> np.ndarray:
  """Returns the partial-label mask of a training split.

  Masks are built over all ``dataset_tasks`` and then the columns of ``tasks`` are selected, so a
  single-task run sees exactly the images that a multi-task run with the same setting and seed
  labels for that task (as MTPSL's STL baselines use the MTL label files).

  Args:
    setting: ``"full"`` (every task labelled); ``"onelabel"`` (MTPSL: exactly one task per
      image, tasks balanced so counts differ by at most 1, assignment random); ``"randomlabels"``
      (MTPSL: each image gets k ~ U{1..T-1} tasks, a random subset; needs T >= 2); or the path
      of a ``.npy`` float [N, K] 0/1 array whose K columns follow ``dataset_tasks`` (the
      published MTPSL splits converted by ``tools/convert_mtpsl_label_settings.py``).
    num_examples: N, examples in the training split; row i belongs to example index i.
    dataset_tasks: the dataset's task order, T = len(dataset_tasks) (NYUv2: semseg, depth,
      normal).
    tasks: the trained tasks (config order), a subset of ``dataset_tasks``.
    seed: seed of the ``np.random.Generator`` for the generated settings (ignored otherwise).

  Returns:
    float32 [N, len(tasks)] with 1 where that task's ground truth may be used for that example.

  Raises:
    ValueError: unknown/duplicate task, empty ``tasks``, N < 1, ``randomlabels`` with T < 2,
      a ``.pth`` path (convert it first), a non-.npy path, a file that is not 2-D, has K !=
      len(dataset_tasks) columns, a row count != N (both named), or values other than 0/1.
    FileNotFoundError: the mask file does not exist.
  """
  dataset_tasks, tasks = tuple(dataset_tasks), tuple(tasks)
  if len(set(dataset_tasks)) != len(dataset_tasks):
    raise ValueError(f"dataset_tasks {dataset_tasks} has duplicates.")
  unknown = [t for t in tasks if t not in dataset_tasks]
  if not tasks or unknown or len(set(tasks)) != len(tasks):
    raise ValueError(
        f"tasks {tasks} must be a non-empty list of distinct tasks of the dataset {dataset_tasks} "
        f"(unknown: {unknown})."
    )
  if num_examples < 1:
    raise ValueError(f"num_examples must be >= 1, got {num_examples}.")
  n, t = num_examples, len(dataset_tasks)
  rng = np.random.default_rng(seed)

  if setting == "full":
    mask = np.ones((n, t), np.float32)
  elif setting == "onelabel":
    mask = np.eye(t, dtype=np.float32)[rng.permutation(np.arange(n) % t)]
  elif setting == "randomlabels":
    if t < 2:
      raise ValueError(
          f"label setting 'randomlabels' needs >= 2 dataset tasks, got {dataset_tasks}."
      )
    k = rng.integers(1, t, size=(n, 1))  # tasks per image, 1..T-1
    rank = np.argsort(np.argsort(rng.random((n, t)), axis=1), axis=1)  # random order of tasks
    mask = (rank < k).astype(np.float32)
  else:
    mask = _load_mask_file(fileio.as_path(setting), n, dataset_tasks)
  return mask[:, [dataset_tasks.index(name) for name in tasks]]


def _load_mask_file(
    path: epath.Path, num_examples: int, dataset_tasks: tuple[str, ...]
) -> np.ndarray:
  """Loads and validates a [N, K] 0/1 .npy mask (see ``resolve_label_mask``)."""
  expected = f"a .npy float [N={num_examples}, K={len(dataset_tasks)}] 0/1 array with columns {dataset_tasks}"
  if path.suffix == ".pth":
    raise ValueError(
        f"label setting {path} is a PyTorch file; convert it first with "
        f"`python tools/convert_mtpsl_label_settings.py {path} {path.with_suffix('.npy')}`."
    )
  if path.suffix != ".npy":
    raise ValueError(f"label setting {str(path)!r} is neither one of {SETTINGS} nor {expected}.")
  if not path.is_file():
    raise FileNotFoundError(f"label setting file {path} does not exist; expected {expected}.")
  try:
    mask = np.load(io.BytesIO(path.read_bytes()), allow_pickle=False)
  except (OSError, ValueError) as e:
    raise ValueError(
        f"label setting {path} is not a readable numeric .npy ({e}); expected {expected}."
    ) from e
  if mask.ndim != 2 or mask.shape[1] != len(dataset_tasks):
    raise ValueError(f"label setting {path} has shape {mask.shape}; expected {expected}.")
  if mask.shape[0] != num_examples:
    raise ValueError(
        f"label setting {path} has {mask.shape[0]} rows but the training split has "
        f"{num_examples} examples; expected {expected}."
    )
  if not np.isin(mask, (0, 1)).all():
    raise ValueError(f"label setting {path} has values other than 0 and 1; expected {expected}.")
  return mask.astype(np.float32)
