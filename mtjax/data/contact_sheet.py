"""Writes a PNG contact sheet of procedural_rooms examples: image | semantic | depth | normals |
instances | edges, one row per example.

    python -m mtjax.data.contact_sheet --out docs/procedural_rooms.png --num 4
"""

import argparse
import io

import numpy as np
from PIL import Image

from mtjax import fileio, tasks
from mtjax.data import procedural
from mtjax.data.builders import procedural_rooms


def instance_to_rgb(instance: np.ndarray) -> np.ndarray:
  """Region ids int [..., H, W] (-1 = none, black) -> uint8 RGB with a fixed colour per id."""
  palette = np.random.default_rng(0).integers(40, 256, size=(int(instance.max()) + 2, 3))
  palette[-1] = 0
  return palette[np.where(instance >= 0, instance, -1)].astype(np.uint8)


def edge_to_rgb(edge: np.ndarray) -> np.ndarray:
  """Edge map uint8 [..., H, W, 1] (1 edge, 0 not, 255 invalid) -> uint8 RGB [..., H, W, 3]:
  edges white, the rest black, invalid pixels grey."""
  edge = edge[..., 0]
  grey = np.where(edge == 1, 255, np.where(edge == 0, 0, 128)).astype(np.uint8)
  return np.repeat(grey[..., None], 3, axis=-1)


def contact_sheet(examples: list[dict]) -> np.ndarray:
  """uint8 [N H, 6 W, 3] from `render_scene` outputs (image, semantic, depth, normal, instance,
  edge)."""
  max_depth = max(float(e["depth"].max()) for e in examples)
  rows = [
      np.concatenate(
          [
              e["image"],
              tasks.semseg_to_rgb(e["semantic"], len(procedural.CLASSES)),
              tasks.depth_to_rgb(e["depth"], max_depth),
              tasks.normal_to_rgb(e["normal"]),
              instance_to_rgb(e["instance"]),
              edge_to_rgb(e["edge"]),
          ],
          axis=1,
      )
      for e in examples
  ]
  return np.concatenate(rows, axis=0)


def main():
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument("--out", required=True, help="PNG path to write")
  parser.add_argument("--num", type=int, default=4, help="examples (rows)")
  parser.add_argument("--split", default="train", choices=procedural_rooms.SPLITS)
  parser.add_argument("--height", type=int, default=96)
  parser.add_argument("--width", type=int, default=128)
  parser.add_argument("--force", action="store_true", help="overwrite an existing --out")
  args = parser.parse_args()
  if fileio.as_path(args.out).exists() and not args.force:
    parser.error(f"{args.out} exists; pass --force to overwrite it")
  examples = [
      procedural.render_scene(procedural_rooms.example_seed(args.split, i), args.height, args.width)
      for i in range(args.num)
  ]
  png = io.BytesIO()
  Image.fromarray(contact_sheet(examples)).save(png, format="PNG")
  fileio.write_atomic(args.out, png.getvalue())  # A local path or a gs:// URL.
  print(f"wrote {args.out}: {args.num} {args.split} examples at {args.height}x{args.width}")


if __name__ == "__main__":
  main()
