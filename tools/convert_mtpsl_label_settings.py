"""Converts a published partial-label split to the .npy that ``config.label_setting`` accepts.

The output is always a float32 [N, K] 0/1 array (``mtjax.data.label_settings.resolve_label_mask``):
row i is the i-th training example, column k the k-th task of the dataset. Input formats, told
apart by the file suffix and content:

1. MTPSL NYUv2 / Cityscapes, ``.pth`` (VICO-UoE/MTPSL ``data/{nyuv2,cityscapes}_settings/
   {onelabel,randomlabels}.pth``; identical copies in JTR ``code/data/`` and DiffusionMTL
   ``data/ssl_mapping/nyud_low/``): a torch pickle ``{'labels_weights': FloatTensor[N, K]}``, rows
   already in training-example order, columns the dataset tasks (NYUv2: semantic, depth, normal;
   Cityscapes: semantic, depth). Written as is; ``--ids`` is not used.

2. MTPSL PASCAL-Context, ``.npy`` (``data/pascal_settings/{onelabel,randomlabels}.npy``; the same
   blobs in DiffusionMTL ``data/ssl_mapping/pascal/``): ``np.save`` of a pickled dict task -> list
   of train image ids (``'2008_000002'``), keys ``human_parts``, ``edge``, ``semseg``,
   ``normals``, ``sal``. MTPSL reads it with ``np.load(allow_pickle=True).item()``; this tool
   unpickles it allowing only the NumPy array / string constructors such a file needs, so a
   tampered file cannot run code.

3. The same dict as JSON, ``.json`` (task -> list of id strings), e.g. ``pascal_onelabel.json``.

4. DiffusionMTL PASCAL-Context, ``.pth`` (prismformore/DiffusionMTL ``data/ssl_mapping/pascal/
   new_{onelabel,randomlabels}.pth``, built from format 2 by its ``get_task_mapping.ipynb``): a
   torch zip of a plain dict id -> 5 ints 0/1 in the order [semseg, human_parts, sal, normals,
   edge]. The published keys are ``numpy.str_``; they are read with ``torch.load(weights_only=
   True)`` allowing the two NumPy globals they need.

PASCAL splits (2-4) are keyed by image id, so they need ``--ids PATH``: the training split's id
list in example order, one id per line (the dataset's ``ImageSets/Context/train.txt``, 4998 ids).
Row i of the output is the i-th id of that file; the columns follow mtjax's PASCAL task order
``PASCAL_TASKS`` = (semseg, human_parts, saliency, normal, edge) (``normals`` -> ``normal``,
``sal`` -> ``saliency``). Published counts (docs/metrics.md, "Partial-label
splits"): onelabel 999 / 999 / 1000 / 1000 / 1000 for human_parts / edge / semseg / normals / sal,
disjoint, union = the 4998 train ids; randomlabels 847 / 2557 / 2450 / 2480 / 2445, 1-4 tasks per
image, every image labelled for at least one task.

Checks on PASCAL splits (each a ValueError naming the file and how many ids are affected): a task
key other than the five; an id listed twice for one task; an id of the split that is not in the
``--ids`` list (a wrong list, e.g. val.txt); an id of the ``--ids`` list labelled for no task.
The last is refused rather than written as an all-zero row because both published splits label
every train image (onelabel: exactly one task each; randomlabels: 1-4), so an unlabelled id means
the ids list and the split do not belong together.

Reading ``.pth`` files needs PyTorch, which is not a dependency of mtjax (install it in any
environment, e.g. ``pip install torch``); ``.npy`` / ``.json`` splits and the output need only
NumPy.

Usage:
  python tools/convert_mtpsl_label_settings.py onelabel.pth nyuv2_onelabel.npy [--force]
  python tools/convert_mtpsl_label_settings.py onelabel.npy pascal_onelabel.npy \\
      --ids PASCALContext/ImageSets/Context/train.txt [--force]
"""

from __future__ import annotations

import argparse
import codecs
import io
import json
import os
import pickle
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from etils import epath

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Run from a checkout, uninstalled.

from mtjax import fileio  # pylint: disable=g-import-not-at-top  # noqa: E402

# mtjax's PASCAL-Context task order: the columns of a converted PASCAL split.
PASCAL_TASKS = ("semseg", "human_parts", "saliency", "normal", "edge")
# MTPSL's task keys (pascal_settings/*.npy) -> mtjax task names.
MTPSL_PASCAL_KEYS = {
    "semseg": "semseg",
    "human_parts": "human_parts",
    "sal": "saliency",
    "normals": "normal",
    "edge": "edge",
}
# DiffusionMTL new_*.pth: the MTPSL key of each of the 5 ints [DMTL get_task_mapping.ipynb].
DMTL_PASCAL_ORDER = ("semseg", "human_parts", "sal", "normals", "edge")

_PASCAL_FORMAT = (
    "a PASCAL split: MTPSL's pickled dict task -> list of ids (.npy), the same dict as .json, "
    "or DiffusionMTL's dict id -> 5 ints [semseg, human_parts, sal, normals, edge] (.pth), with "
    f"task keys {tuple(MTPSL_PASCAL_KEYS)}"
)
_MTPSL_FORMAT = "MTPSL's {'labels_weights': FloatTensor[N, K]}"


def _numpy_multiarray():
  try:
    from numpy._core import multiarray  # NumPy >= 2.
  except ImportError:  # pragma: no cover - NumPy 1.x.
    from numpy.core import multiarray
  return multiarray


class _SplitUnpickler(pickle.Unpickler):
  """Unpickles an ``np.save``-d object array of dicts / lists / strings and nothing else."""

  def find_class(self, module, name):
    if module in ("numpy.core.multiarray", "numpy._core.multiarray") and name in (
        "_reconstruct",
        "scalar",
    ):
      return getattr(_numpy_multiarray(), name)
    if module == "numpy" and name in ("ndarray", "dtype"):
      return getattr(np, name)
    if (module, name) == ("_codecs", "encode"):  # Bytes in pickle protocol 2.
      return codecs.encode
    raise pickle.UnpicklingError(
        f"global {module}.{name} is not allowed in a label split (only NumPy arrays, dicts, "
        "lists and strings are)"
    )


def _load_pickled_npy(path: epath.Path) -> object:
  """The object of a 0-d object .npy, like ``np.load(allow_pickle=True).item()``, run safely."""
  with path.open("rb") as f:
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
      shape, _, dtype = np.lib.format.read_array_header_1_0(f)
    elif version == (2, 0):
      shape, _, dtype = np.lib.format.read_array_header_2_0(f)
    else:
      raise ValueError(f".npy format version {version} (expected 1.0 or 2.0)")
    if dtype != np.dtype(object) or shape != ():
      raise ValueError(f"it holds a {dtype} array of shape {shape}, not one pickled object")
    value = _SplitUnpickler(f).load()
  if isinstance(value, np.ndarray):
    if value.shape != () or value.dtype != np.dtype(object):
      raise ValueError(f"its pickle holds a {value.dtype} array of shape {value.shape}")
    value = value.item()
  return value


def _torch_load(path: epath.Path) -> object:
  """``torch.load(weights_only=True)`` allowing the NumPy string keys of DiffusionMTL's files."""
  try:
    import torch
  except ImportError as e:
    raise ImportError(
        "reading MTPSL .pth files needs PyTorch, an optional extra of mtjax: `pip install torch` "
        "(any environment will do; the .npy it writes needs only NumPy)."
    ) from e
  safe_globals = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5.
  try:
    if safe_globals is None:
      return torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
    scalar = _numpy_multiarray().scalar
    allowed = [
        scalar,  # As pickled under NumPy 2 (numpy._core.multiarray.scalar) ...
        (scalar, "numpy.core.multiarray.scalar"),  # ... and 1.x (DiffusionMTL's files).
        np.dtype,
        type(np.dtype("U1")),
    ]
    with safe_globals(allowed):
      return torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
  except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [repr(e)]
    reason = next((line for line in lines if line.startswith("WeightsUnpickler")), lines[0])
    raise ValueError(
        f"{path} is not a readable torch file ({reason}); expected {_MTPSL_FORMAT} or "
        f"{_PASCAL_FORMAT}."
    ) from e


def read_ids(path: epath.Path) -> list[str]:
  """The ids of an image-set file, one per line (blank lines skipped), in file order.

  Raises:
    FileNotFoundError: ``path`` missing. ValueError: no ids, or an id listed twice.
  """
  try:
    text = path.read_text()
  except (FileNotFoundError, IsADirectoryError) as e:
    raise FileNotFoundError(
        f"--ids {path} does not exist; expected the training split's ids, one per line "
        "(PASCAL-Context: ImageSets/Context/train.txt, 4998 ids)."
    ) from e
  ids = [line.strip() for line in text.splitlines() if line.strip()]
  if not ids:
    raise ValueError(f"--ids {path} holds no ids; expected one id per line.")
  if len(set(ids)) != len(ids):
    seen, repeated = set(), []
    for i in ids:
      if i in seen:
        repeated.append(i)
      seen.add(i)
    raise ValueError(
        f"--ids {path} lists {len(repeated)} ids more than once (e.g. {repeated[:3]}); expected "
        "each training id once."
    )
  return ids


def read_pascal_split(path: epath.Path, data: object | None = None) -> dict[str, list[str]]:
  """Reads a PASCAL split (formats 2-4 of the module docstring) as MTPSL key -> list of ids.

  Args:
    path: the split file (.npy, .json or .pth).
    data: the already-loaded content of a .pth (DiffusionMTL dict id -> 5 ints); read from
      ``path`` when None.

  Raises:
    ValueError: unreadable file, not one of the formats, a task key other than the five, a row of
      a DiffusionMTL dict that is not 5 values 0/1, or an id listed twice for one task.
  """
  if data is None:
    try:
      if path.suffix == ".json":
        data = json.loads(path.read_text())
      elif path.suffix == ".npy":
        data = _load_pickled_npy(path)
      elif path.suffix == ".pth":
        data = _torch_load(path)
      else:
        raise ValueError(f"unknown suffix {path.suffix!r}")
    except (OSError, ValueError, pickle.UnpicklingError, EOFError) as e:
      raise ValueError(f"{path} is not a readable split ({e}); expected {_PASCAL_FORMAT}.") from e
  if not isinstance(data, Mapping) or not data:
    raise ValueError(
        f"{path} holds a {type(data).__name__}, not a dict; expected {_PASCAL_FORMAT}."
    )

  if path.suffix == ".pth":  # DiffusionMTL: id -> [semseg, human_parts, sal, normals, edge].
    split = {key: [] for key in DMTL_PASCAL_ORDER}
    for image_id, row in data.items():
      values = np.asarray(row.tolist() if hasattr(row, "tolist") else row)
      if values.shape != (len(DMTL_PASCAL_ORDER),) or not np.isin(values, (0, 1)).all():
        raise ValueError(
            f"{path} maps {str(image_id)!r} to {row!r}; expected {_MTPSL_FORMAT} or DiffusionMTL's "
            f"dict id -> 5 values 0/1 in the order {list(DMTL_PASCAL_ORDER)} (new_*.pth)."
        )
      for key, value in zip(DMTL_PASCAL_ORDER, values):
        if value:
          split[key].append(str(image_id))
    return split

  keys = [str(k) for k in data]
  if sorted(keys) != sorted(MTPSL_PASCAL_KEYS):
    raise ValueError(
        f"{path} has task keys {keys}; expected exactly {list(MTPSL_PASCAL_KEYS)} (MTPSL "
        "pascal_settings)."
    )
  split = {}
  for key, ids in data.items():
    if isinstance(ids, (str, bytes)) or not isinstance(ids, (Sequence, np.ndarray)):
      raise ValueError(  # noqa: TRY004 (a bad file, reported like the other format errors)
          f"{path} task {key!r} holds a {type(ids).__name__}; expected a list of ids."
      )
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
      raise ValueError(
          f"{path} lists {len(ids) - len(set(ids))} ids of task {key!r} more than once; expected "
          "each id at most once per task."
      )
    split[str(key)] = ids
  return split


def pascal_mask(
    split: Mapping[str, Sequence[str]], ids: Sequence[str], source: epath.Path
) -> np.ndarray:
  """float32 [len(ids), 5]: row i for ``ids[i]``, columns ``PASCAL_TASKS``.

  Raises:
    ValueError: an id of ``split`` not in ``ids``, or an id of ``ids`` labelled for no task (the
      message names ``source`` and says how many).
  """
  row = {image_id: i for i, image_id in enumerate(ids)}
  mask = np.zeros((len(ids), len(PASCAL_TASKS)), np.float32)
  missing = sorted({i for task_ids in split.values() for i in task_ids if i not in row})
  if missing:
    raise ValueError(
        f"{source}: {len(missing)} ids of the split are not in the --ids list of {len(ids)} ids "
        f"(e.g. {missing[:3]}); pass the training split's ids (ImageSets/Context/train.txt)."
    )
  for key, task_ids in split.items():
    mask[[row[i] for i in task_ids], PASCAL_TASKS.index(MTPSL_PASCAL_KEYS[key])] = 1
  unlabelled = np.flatnonzero(mask.sum(1) == 0)
  if unlabelled.size:
    raise ValueError(
        f"{source}: {unlabelled.size} of the {len(ids)} --ids are labelled for no task (e.g. "
        f"{[ids[i] for i in unlabelled[:3]]}); the published MTPSL splits label every training "
        "image, so the ids list and the split do not match."
    )
  return mask


def convert(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    *,
    force: bool = False,
    ids_path: str | os.PathLike | None = None,
) -> np.ndarray:
  """Converts a split (any format of the module docstring) and writes float32 [N, K] .npy.

  Args:
    input_path: MTPSL .pth (NYUv2 / Cityscapes), MTPSL PASCAL .npy, its .json copy, or
      DiffusionMTL PASCAL .pth.
    output_path: the .npy to write.
    force: overwrite an existing ``output_path``.
    ids_path: the training ids in example order, one per line; needed by PASCAL splits, refused
      for MTPSL's ``labels_weights`` files.

  Returns:
    The mask written: float32 [N, K] (PASCAL: K = 5, columns ``PASCAL_TASKS``).

  Raises:
    FileNotFoundError: ``input_path`` or ``ids_path`` missing.
    FileExistsError: ``output_path`` exists and ``force`` is false.
    ValueError: ``output_path`` does not end in .npy or is the input; an unknown input suffix; a
      file of none of the formats; ``ids_path`` missing for a PASCAL split or given for a
      ``labels_weights`` file; ids of the split and the list not matching (see ``pascal_mask``).
    ImportError: a .pth input and PyTorch is not installed.
  """
  input_path, output_path = fileio.as_path(input_path), fileio.as_path(output_path)
  if not input_path.is_file():
    raise FileNotFoundError(
        f"{input_path} does not exist; expected an MTPSL / DiffusionMTL label-settings file "
        "(.pth, .npy or .json)."
    )
  if input_path.suffix not in (".pth", ".npy", ".json"):
    raise ValueError(
        f"{input_path} is neither .pth ({_MTPSL_FORMAT}, or DiffusionMTL's PASCAL dict) nor "
        f".npy / .json ({_PASCAL_FORMAT})."
    )
  if output_path.suffix != ".npy":
    raise ValueError(f"output {output_path} must end in .npy.")
  if _same_file(output_path, input_path):
    raise ValueError(f"output {output_path} is the input file; choose another output path.")
  if output_path.exists() and not force:
    raise FileExistsError(f"{output_path} exists; pass --force to overwrite it.")

  data = _torch_load(input_path) if input_path.suffix == ".pth" else None
  if isinstance(data, Mapping) and "labels_weights" in data:
    if ids_path is not None:
      raise ValueError(
          f"{input_path} is an MTPSL labels_weights file, already in example order; --ids is "
          "only for PASCAL splits keyed by image id."
      )
    weights = data["labels_weights"]
    import torch  # Already imported by _torch_load.

    if not isinstance(weights, torch.Tensor) or weights.ndim != 2:
      raise ValueError(
          f"{input_path} has no 2-D tensor 'labels_weights'; expected {_MTPSL_FORMAT}."
      )
    mask = weights.float().numpy()
  elif input_path.suffix == ".pth" and not (isinstance(data, Mapping) and data):
    raise ValueError(
        f"{input_path} has no 2-D tensor 'labels_weights' and is no DiffusionMTL dict; expected "
        f"{_MTPSL_FORMAT} or {_PASCAL_FORMAT}."
    )
  else:
    split = read_pascal_split(input_path, data)
    if ids_path is None:
      raise ValueError(
          f"{input_path} is a PASCAL split keyed by image id: pass --ids PATH, the training ids "
          "in example order (ImageSets/Context/train.txt)."
      )
    mask = pascal_mask(split, read_ids(fileio.as_path(ids_path)), input_path)
  buffer = io.BytesIO()
  np.save(buffer, mask)
  fileio.write_atomic(output_path, buffer.getvalue())
  return mask


def _same_file(a: epath.Path, b: epath.Path) -> bool:
  """Whether two paths name one file (local: after resolving links; URLs: as written)."""
  if fileio.is_url(a) or fileio.is_url(b):
    return os.fspath(a) == os.fspath(b)
  return os.path.realpath(a) == os.path.realpath(b)


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument(
      "input", help="MTPSL .pth / PASCAL .npy, its .json copy, or DiffusionMTL .pth"
  )
  parser.add_argument("output", help="output .npy file (a local path or gs://...)")
  parser.add_argument(
      "--ids",
      default=None,
      help="PASCAL splits: the training ids in example order, one per line "
      "(ImageSets/Context/train.txt)",
  )
  parser.add_argument("--force", action="store_true", help="overwrite an existing output")
  args = parser.parse_args(argv)
  try:
    mask = convert(args.input, args.output, force=args.force, ids_path=args.ids)
  except (FileNotFoundError, FileExistsError, ValueError, ImportError) as e:
    parser.exit(2, f"error: {e}\n")
  counts = mask.sum(0).astype(int).tolist()
  if mask.shape[1] == len(PASCAL_TASKS) and args.ids is not None:
    counts = dict(zip(PASCAL_TASKS, counts))
  print(f"wrote {args.output}: float32 {list(mask.shape)}, labelled per task {counts}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
