"""Draws exported region maps over their images, to inspect an export: one row per example,
image | regions (a colour per region, blended) | boundaries.

    python tools/draw_regions.py --regions regions/nyuv2_fz --data_dir data/nyuv2 --split train \
        --num 3 --out sheet.png [--scale 0.5]

Inputs are those of tools/export_regions.py (``--data_dir`` NYUv2, ``--tfds``, ``--images``).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import export_regions  # noqa: E402  pylint: disable=g-import-not-at-top
from mtjax import fileio  # noqa: E402  pylint: disable=g-import-not-at-top
from mtjax.data import regions  # noqa: E402  pylint: disable=g-import-not-at-top
from mtjax.data.contact_sheet import instance_to_rgb  # noqa: E402  pylint: disable=g-import-not-at-top


def overlay_row(image: np.ndarray, ids: np.ndarray) -> np.ndarray:
  """uint8 [H, 3 W, 3]: the image, regions blended 50 % over it, and region boundaries in white.

  Args:
    image: uint8 [H, W, 3]. ids: int [H, W] region ids, −1 = none (left uncoloured).
  """
  import skimage.segmentation  # pylint: disable=g-import-not-at-top

  colours = instance_to_rgb(ids).astype(np.float32)
  blend = np.where((ids >= 0)[..., None], 0.5 * image + 0.5 * colours, image).astype(np.uint8)
  edges = skimage.segmentation.find_boundaries(ids, mode="inner")
  bounds = image.copy()
  bounds[edges] = 255
  return np.concatenate([image, blend, bounds], axis=1)


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--regions", required=True, help="region directory (docs/regions.md)")
  p.add_argument("--data_dir")
  p.add_argument("--tfds")
  p.add_argument("--images")
  p.add_argument("--split", default="train")
  p.add_argument("--num", type=int, default=3, help="the first N examples with a map")
  p.add_argument("--scale", type=float, default=1.0, help="resize the sheet by this factor")
  p.add_argument("--out", required=True, help="PNG to write, local or gs:// (refused if it exists)")
  args = p.parse_args(argv)
  if fileio.as_path(args.out).exists():
    p.error(f"{args.out} exists; remove it first")
  images = export_regions.make_images(args)
  rows = []
  for index, example_id in enumerate(images.example_ids):
    path = regions.map_path(args.regions, images.split, example_id)
    if len(rows) == args.num or not path.is_file():
      continue
    image = images.read(index)
    rows.append(overlay_row(image, regions.read_map(path, example_id, image.shape[:2])))
  if not rows:
    p.error(f"no map of {images.split} under {args.regions} matches the images")
  sheet = Image.fromarray(np.concatenate(rows, axis=0))
  if args.scale != 1.0:
    sheet = sheet.resize((round(sheet.width * args.scale), round(sheet.height * args.scale)))
  png = io.BytesIO()
  sheet.save(png, format="PNG")
  fileio.write_atomic(args.out, png.getvalue())
  print(f"wrote {args.out}: {len(rows)} examples")
  return 0


if __name__ == "__main__":
  sys.exit(main())
