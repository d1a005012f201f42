"""Converts RDC's released SAM region maps (8-bit gray PNGs) into mtjax's region format.

    python tools/convert_released_regions.py --data_dir /path/to/nyuv2 --split train \
        --out /path/to/nyuv2_regions/released

RDC's code (HereNowL/Region-aware-Distribution-Contrast a6fa360, ``dataset/nyuv2ssl.py`` lines
138-141) reads ``{data_dir}/{split}/sam/{i}.png`` with ``cv2.imread`` (3 channels, BGR) and
``cv2.cvtColor(..., cv2.COLOR_RGB2GRAY)``, and its loss treats every gray value 0..255 (0 included)
with at least 10 pixels as a region (``model/region_cons.py`` lines 144-175). This tool reads each
map with the same two calls and writes region id = gray value (file value gray + 1, so every pixel
is in a region) in the format of ``mtjax.data.regions``, one map per example of the MTAN layout
(``{split}/image/{i}.npy``), with a manifest saying where they came from. Train on them with
``config.regions.source = "files"``, ``config.regions.relabel = "none"``,
``config.regions.max_regions = 256`` (``configs/nyud_rdc_as_released.py``).

Exit status 0 when every map was converted; 1 with one message naming the file and what was
expected otherwise. Nothing is written into ``--data_dir``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Run from a checkout, uninstalled.

from mtjax import fileio  # pylint: disable=g-import-not-at-top
from mtjax.data import region_export, regions  # pylint: disable=g-import-not-at-top

METHOD = "rdc_released_sam"


def read_released_map(path: str | os.PathLike) -> np.ndarray:
  """uint8 [H, W]: the gray values of one released map (a local path or a gs:// URL), as RDC's
  loader computes them (``cv2.imread``'s decoding: ``cv2.imdecode`` with ``IMREAD_COLOR``).

  Raises:
    ValueError: the file is missing or not an image OpenCV reads.
  """
  path = fileio.as_path(path)
  if not path.is_file():
    raise ValueError(f"released region map {path} does not exist; expected an 8-bit PNG there")
  image = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
  if image is None:
    raise ValueError(f"released region map {path} is not an image OpenCV can read")
  return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def convert(data_dir: str, split: str, out: str, overwrite: bool = False) -> int:
  """Converts every map of ``split``; returns how many.

  Raises:
    ValueError: a missing or unreadable map, a map whose size is not its image's, or an output
      directory holding maps of another method (``regions.write_manifest``); nothing is written
      unless every map is good.
    region_export.ExportError: the split's image folder is not the MTAN layout;
      region_export.BadImageError: an unreadable image.
  """
  images = region_export.nyuv2_images(data_dir, split)
  height, width = images.read(0).shape[:2]
  sam = fileio.as_path(data_dir) / split / "sam"
  maps = []
  for k, example_id in enumerate(images.example_ids):  # Everything is checked before writing.
    path = sam / f"{example_id}.png"
    gray = read_released_map(path)
    shape = images.read(k).shape[:2]
    if gray.shape != shape:
      raise ValueError(
          f"released region map {path} is {gray.shape[0]}x{gray.shape[1]}; its image "
          f"{images.describe(k)} is {shape[0]}x{shape[1]}"
      )
    maps.append(gray)
  regions.write_manifest(
      out,
      {
          "method": METHOD,
          "parameters": {"gray_values": "cv2.imread + cv2.COLOR_RGB2GRAY", "id": "gray value"},
          "source": {
              "dataset": "nyuv2",
              "data_dir": os.fspath(fileio.as_path(data_dir)),
              "split": split,
          },
          "image_size": [height, width],
      },
      overwrite=overwrite,
  )
  for example_id, gray in zip(images.example_ids, maps):
    regions.write_map(out, split, example_id, gray.astype(np.int32) + 1)
  return len(maps)


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--data_dir", required=True, help="NYUv2 root (MTAN layout) with {split}/sam/")
  p.add_argument("--split", default="train", help="default: train")
  p.add_argument("--out", required=True, help="the region directory to write")
  p.add_argument("--overwrite", action="store_true", help="replace another method's manifest")
  args = p.parse_args(argv)
  try:
    n = convert(args.data_dir, args.split, args.out, args.overwrite)
  except (ValueError, region_export.ExportError) as e:  # BadImageError is an ExportError.
    print(f"convert_released_regions: {e}", file=sys.stderr)
    return 1
  print(f"{args.out}/{args.split}: {n} maps")
  return 0


if __name__ == "__main__":
  sys.exit(main())
