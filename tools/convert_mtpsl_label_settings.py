"""Converts an MTPSL partial-label file (.pth) to the .npy that ``config.label_setting`` accepts.

MTPSL (VICO-UoE/MTPSL ``data/*_settings/{onelabel,randomlabels}.pth``) stores a torch pickle
``{'labels_weights': FloatTensor[N, K]}``: row i is the i-th training example, columns the dataset
tasks (NYUv2: semantic, depth, normal; Cityscapes: semantic, depth). The output is float32 [N, K].

Needs PyTorch, which is not a dependency of mtjax (install it in any environment, e.g.
``pip install torch``); the output needs only NumPy.

Usage: python tools/convert_mtpsl_label_settings.py onelabel.pth nyuv2_onelabel.npy [--force]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def convert(input_path: Path, output_path: Path, *, force: bool = False) -> np.ndarray:
  """Reads ``labels_weights`` from an MTPSL .pth and writes it as float32 [N, K] .npy.

  Raises:
    FileNotFoundError: ``input_path`` missing.
    FileExistsError: ``output_path`` exists and ``force`` is false.
    ValueError: ``output_path`` does not end in .npy; the file has no 2-D ``labels_weights``.
    ImportError: PyTorch is not installed.
  """
  if not input_path.is_file():
    raise FileNotFoundError(
        f"{input_path} does not exist; expected an MTPSL .pth label-settings file."
    )
  if output_path.suffix != ".npy":
    raise ValueError(f"output {output_path} must end in .npy.")
  if output_path.exists() and not force:
    raise FileExistsError(f"{output_path} exists; pass --force to overwrite it.")
  try:
    import torch
  except ImportError as e:
    raise ImportError(
        "reading MTPSL .pth files needs PyTorch, an optional extra of mtjax: `pip install torch` "
        "(any environment will do; the .npy it writes needs only NumPy)."
    ) from e
  data = torch.load(input_path, map_location="cpu", weights_only=True)
  weights = data.get("labels_weights") if isinstance(data, dict) else None
  if not isinstance(weights, torch.Tensor) or weights.ndim != 2:
    raise ValueError(
        f"{input_path} has no 2-D tensor 'labels_weights'; expected MTPSL's {{'labels_weights': FloatTensor[N, K]}}."
    )
  mask = weights.float().numpy()
  np.save(output_path, mask)
  return mask


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("input", type=Path, help="MTPSL .pth file")
  parser.add_argument("output", type=Path, help="output .npy file")
  parser.add_argument("--force", action="store_true", help="overwrite an existing output")
  args = parser.parse_args(argv)
  try:
    mask = convert(args.input, args.output, force=args.force)
  except (FileNotFoundError, FileExistsError, ValueError, ImportError) as e:
    parser.exit(2, f"error: {e}\n")
  print(
      f"wrote {args.output}: float32 {list(mask.shape)}, labelled per task {mask.sum(0).astype(int).tolist()}"
  )
  return 0


if __name__ == "__main__":
  sys.exit(main())
