"""Converts an ImageNet-pretrained PyTorch HRNet checkpoint to mtjax's backbone variables (msgpack).

    python tools/convert_torch_weights.py hrnetv2_w18_imagenet_pretrained.pth hrnet_w18.msgpack
    python tools/convert_torch_weights.py model.safetensors hrnet_w18_small_v2.msgpack \
        --variant hrnet_w18_small_v2

Then train with ``--config.model.pretrained=hrnet_w18.msgpack`` (configs/nyud_hrnet18.py). Accepts
timm's state dicts (.pth / .bin / .safetensors) and HRNet-Image-Classification's .pth; the
classification head is skipped; anything else that does not map is an error naming the keys
(``mtjax.models.hrnet_import``). .safetensors needs no torch; .pth / .bin need torch
(``pip install -e ".[convert]"``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtjax import fileio  # noqa: E402  pylint: disable=g-import-not-at-top
from mtjax.models import hrnet, hrnet_import  # noqa: E402  pylint: disable=g-import-not-at-top


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("src", help="PyTorch checkpoint (.pth, .pt, .bin, .safetensors; local or gs://)")
  p.add_argument(
      "dst", help="msgpack file to write, local or gs:// (refused if it exists, unless --force)"
  )
  p.add_argument("--variant", default="hrnet_w18", choices=tuple(hrnet.VARIANTS))
  p.add_argument("--force", action="store_true")
  args = p.parse_args(argv)
  if fileio.as_path(args.dst).exists() and not args.force:
    print(f"convert_torch_weights: error: {args.dst} exists; pass --force", file=sys.stderr)
    return 2
  try:
    variables = hrnet_import.convert_state_dict(
        hrnet_import.read_state_dict(args.src), args.variant
    )
  except (FileNotFoundError, ValueError, ImportError) as e:
    print(f"convert_torch_weights: error: {e}", file=sys.stderr)
    return 2
  hrnet_import.save(variables, args.dst)
  count = sum(v.size for v in jax.tree.leaves(variables["params"]))
  print(f"wrote {args.dst}: {args.variant} backbone, {count:,} parameters")
  return 0


if __name__ == "__main__":
  sys.exit(main())
