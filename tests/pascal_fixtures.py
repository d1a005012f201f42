"""A tiny PASCAL-Context multi-task dataset in the PASCAL_MT layout, in the archive's own formats.

``make_pascal_layout`` writes what ``mtjax.data.pascal_context`` reads: JPEG images, 8-bit pngs,
``.mat`` files made with ``scipy.io.savemat`` (the PASCAL-Part ``anno`` struct nested so that
``loadmat(...)['anno'][0][0][1][0]`` are the objects, as on the real files; the pascal-context
``LabelMap``), and hand-made ``db_info`` class tables.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

DEFAULT_HW = ((20, 28), (26, 18), (16, 22))

# Hand-made class tables: context names ``thing001`` .. ``thing459`` (id = number) except id 427,
# named "tvmonitor", and id 459, named "unknown"; the NYU table names thing001..thing169,
# "unknown" and 30 names absent from the context table. The normal classes are then ids
# 1..169 plus tvmonitor's 427: 170, as with the references' real tables.
TVMONITOR_ID = 427
UNKNOWN_ID = 459
NORMAL_CLASSES = frozenset(range(1, 170)) | {TVMONITOR_ID}
# LabelMap values drawn per 4x4 block: kept (5, 100, 169, 427) and not kept (0, 170, 300, 459).
LABEL_POOL = (0, 5, 100, 169, 170, 300, TVMONITOR_ID, UNKNOWN_ID)

# human_parts scenarios, by example number k % 3.
#  0: persons A and B with parts (B's torso is painted after, over, A's right lower arm), a dog with
#     a "head" part (not painted: not a person) and a person without parts (not painted).
#  1: no person: a dog with parts. -> all ignore.
#  2: a person with a mask but no parts, and a cat. -> all ignore.
# Rectangles are (row0, row1, col0, col1), end-exclusive; they fit a 16x16 image.
PERSON_A = (
    (1, 15, 1, 9),
    (
        ("hair", (1, 3, 2, 6)),
        ("reye", (2, 3, 3, 4)),
        ("neck", (3, 4, 3, 5)),
        ("torso", (4, 9, 2, 7)),
        ("luarm", (4, 7, 1, 2)),
        ("rlarm", (7, 9, 7, 8)),
        ("lhand", (9, 10, 7, 8)),
        ("ruleg", (9, 12, 2, 4)),
        ("llleg", (12, 14, 2, 4)),
        ("rfoot", (14, 15, 2, 4)),
    ),
)
PERSON_B = ((5, 15, 6, 14), (("head", (5, 8, 9, 12)), ("torso", (6, 10, 6, 13))))
DOG = ((11, 16, 9, 15), (("head", (12, 15, 10, 14)),))
PERSON_NO_PARTS = ((0, 2, 12, 15), ())

# A palette for the "P" semseg pngs (index k -> some colour): the file holds indices, not colours.
_PALETTE = [v for k in range(256) for v in ((k * 37) % 256, (k * 91) % 256, (k * 53) % 256)]


def example_ids(splits) -> dict[str, list[str]]:
  """The ids ``make_pascal_layout`` gives each split: 2008_000002, 2008_000004, ... in order."""
  out, k = {}, 0
  for split, n in splits.items():
    out[split] = [f"2008_{2 * (k + j) + 2:06d}" for j in range(n)]
    k += n
  return out


def _rect_mask(hw, rect) -> np.ndarray:
  mask = np.zeros(hw, np.uint8)
  r0, r1, c0, c1 = rect
  mask[r0:r1, c0:c1] = 1
  return mask


def _part_object(hw, name, class_ind, spec):
  """One PASCAL-Part object record: (class, class_ind, mask, parts)."""
  rect, parts = spec
  if parts:
    part_array = np.empty((1, len(parts)), dtype=[("part_name", "O"), ("mask", "O")])
    for j, (part_name, part_rect) in enumerate(parts):
      part_array[0, j] = (part_name, _rect_mask(hw, part_rect))
  else:
    part_array = np.zeros((0, 0))  # MATLAB's [] for an object without parts.
  return (name, np.array([[class_ind]], np.uint8), _rect_mask(hw, rect), part_array)


def write_human_parts(path, image_id, hw, scenario) -> None:
  """Writes a PASCAL-Part ``anno`` struct: anno(1).imname, anno(1).objects(1..N)."""
  objects = {
      0: [
          ("person", 15, PERSON_A),
          ("dog", 12, DOG),
          ("person", 15, PERSON_NO_PARTS),
          ("person", 15, PERSON_B),
      ],
      1: [("dog", 12, DOG)],
      2: [("person", 15, PERSON_NO_PARTS), ("cat", 8, ((3, 9, 3, 9), ()))],
  }[scenario]
  obj_array = np.empty(
      (1, len(objects)),
      dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")],
  )
  for j, (name, class_ind, spec) in enumerate(objects):
    obj_array[0, j] = _part_object(hw, name, class_ind, spec)
  anno = np.empty((1, 1), dtype=[("imname", "O"), ("objects", "O")])
  anno[0, 0] = (image_id, obj_array)
  scipy.io.savemat(path, {"anno": anno})


def write_db_info(folder) -> None:
  """Writes the hand-made ``nyu_classes.json`` and ``context_classes.json`` (see above)."""
  folder = Path(folder)
  folder.mkdir(parents=True, exist_ok=True)
  context = {f"thing{i:03d}": i for i in range(1, 460)}
  del context[f"thing{TVMONITOR_ID}"], context[f"thing{UNKNOWN_ID}"]
  context["tvmonitor"], context["unknown"] = TVMONITOR_ID, UNKNOWN_ID
  nyu = {f"thing{i:03d}": 1000 + i for i in range(1, 170)}
  nyu["unknown"] = 0
  nyu.update({f"nyu only {i}": 2000 + i for i in range(30)})
  (folder / "context_classes.json").write_text(json.dumps(context))
  (folder / "nyu_classes.json").write_text(json.dumps(nyu))


def make_pascal_layout(root, splits=None, hw_list=DEFAULT_HW, seed=0) -> Path:
  """Writes a random PASCAL-Context multi-task dataset in the PASCAL_MT layout; returns ``root``.

  Example k (counted over the splits in order) has id ``example_ids(splits)``, size
  ``hw_list[k % len(hw_list)]`` (each at least 16x16) and:

  - ``JPEGImages/{id}.jpg``: random RGB, JPEG quality 95.
  - semseg: even k ``semseg/VOC12/{id}.png`` ("P" palette png), odd k
    ``semseg/pascal-context/{id}.png`` ("L"); values 0..20, the first row 255. Example 0 also
    has a ``semseg/pascal-context`` png of all 7 (the VOC12 one takes precedence).
  - ``human_parts/{id}.mat``: PASCAL-Part scenario k % 3 (module constants).
  - ``sal_distill/{id}.png``: "L", random 0..255 with 127 and 128 at pixels (0, 0) and (0, 1).
  - ``normals_distill/{id}.png``: "RGB", random 0..255.
  - ``pascal-context/trainval/{id}.mat``: ``LabelMap`` uint16, 4x4 blocks from ``LABEL_POOL``.
  - ``db_info/*.json``: ``write_db_info``.
  - ``ImageSets/Context/{split}.txt``: the split's ids, one a line.

  Args:
    root: directory to write into (created if missing).
    splits: split name -> number of examples; default ``{"train": 3, "val": 2}``.
    hw_list: the (h, w) sizes, cycled.
    seed: seed of the random contents.
  """
  root = Path(root)
  splits = {"train": 3, "val": 2} if splits is None else splits
  rng = np.random.default_rng(seed)
  folders = (
      "JPEGImages",
      "ImageSets/Context",
      "semseg/VOC12",
      "semseg/pascal-context",
      "human_parts",
      "sal_distill",
      "normals_distill",
      "pascal-context/trainval",
  )
  for folder in folders:
    (root / folder).mkdir(parents=True, exist_ok=True)
  write_db_info(root / "db_info")
  k = 0
  for split, ids in example_ids(splits).items():
    (root / "ImageSets" / "Context" / f"{split}.txt").write_text("".join(i + "\n" for i in ids))
    for image_id in ids:
      h, w = hw_list[k % len(hw_list)]
      Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
          root / "JPEGImages" / f"{image_id}.jpg", quality=95
      )
      semseg = rng.integers(0, 21, (h, w)).astype(np.uint8)
      semseg[0] = 255
      if k % 2 == 0:
        png = Image.frombytes("P", (w, h), semseg.tobytes())
        png.putpalette(_PALETTE)
        png.save(root / "semseg" / "VOC12" / f"{image_id}.png")
      else:
        Image.fromarray(semseg).save(root / "semseg" / "pascal-context" / f"{image_id}.png")
      if k == 0:
        Image.fromarray(np.full((h, w), 7, np.uint8)).save(
            root / "semseg" / "pascal-context" / f"{image_id}.png"
        )
      write_human_parts(root / "human_parts" / f"{image_id}.mat", image_id, (h, w), k % 3)
      sal = rng.integers(0, 256, (h, w)).astype(np.uint8)
      sal[0, :2] = (127, 128)
      Image.fromarray(sal).save(root / "sal_distill" / f"{image_id}.png")
      Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
          root / "normals_distill" / f"{image_id}.png"
      )
      blocks = rng.choice(np.asarray(LABEL_POOL), ((h + 3) // 4, (w + 3) // 4))
      labels = np.kron(blocks, np.ones((4, 4), np.int64))[:h, :w].astype(np.uint16)
      labelmap_path = root / "pascal-context" / "trainval" / f"{image_id}.mat"
      scipy.io.savemat(labelmap_path, {"LabelMap": labels})
      k += 1
  return root
