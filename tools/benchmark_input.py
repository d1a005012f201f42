"""Images/s of the tf.data training pipeline alone (no model), as a run of the dataset's config
reads it: its tasks, canvas and augmentation, every label used (label setting "full").

    python tools/benchmark_input.py --dataset nyuv2 --data_dir /path/to/nyuv2
    python tools/benchmark_input.py --dataset procedural_rooms [--data_dir ~/tensorflow_datasets]
    python tools/benchmark_input.py --dataset nyudmt --data_dir data/NYUD_MT
    python tools/benchmark_input.py --dataset pascal_context --synthetic 48 --batch_size 8
    python tools/benchmark_input.py --dataset cityscapes --synthetic 48 --batch_size 8

Configs: nyuv2 and procedural_rooms configs/default.py (MTPSL's RandomScaleCrop {1, 1.2, 1.5}, no
flip, semseg + depth + normal); nyudmt configs/nyudmt.py (resize to 480x640, flip + centre zoom,
4 tasks), pascal_context configs/pascal_context.py (resize to 512x512, flip + centre zoom,
5 tasks), cityscapes configs/cityscapes.py (128x256, flip + RandomScaleCrop, 2 tasks).
``--geometry pad`` gives NYUD-MT / PASCAL the ATRC / InvPT setting instead (centre padding to
448x576 / 512x512, scale_pad augmentation with photometric distortion; NYUD-MT from the atrc
archive).

``--synthetic N`` measures without the data: it writes N training examples of the dataset in its
real on-disk format and at its real size into a temporary folder (deleted afterwards) and reads
those: NYUD-MT in the mtinet archive (jpg, png, npy; 480x640; with ``--geometry pad`` the atrc
archive, png and npy, 425x560), PASCAL-Context in the PASCAL_MT layout (jpg, pngs, PASCAL-Part
and LabelMap .mat; long side 500, short side 300-375, 70% landscape), Cityscapes and NYUv2 in the MTAN .npy layout (128x256, 288x384). The content is
smooth images over blob-shaped regions with piecewise-constant labels, so that decoding (JPEG,
PNG) and the label processing (PASCAL's edge thinning) cost about what they cost on photos;
uniform noise would cost more.

The split is streamed epoch after epoch (a few frames stand for the thousands of a real split:
the cost per image is the same once the files are in the page cache). Prints the median images/s
at the training size over ``--repeats`` runs of ``--batches`` batches after one warm-up run.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# --dataset -> the config module (configs/{name}.py) its run uses.
CONFIGS = {
    "nyuv2": "default",
    "procedural_rooms": "default",
    "nyudmt": "nyudmt",
    "pascal_context": "pascal_context",
    "cityscapes": "cityscapes",
}
SYNTHETIC = ("nyuv2", "nyudmt", "pascal_context", "cityscapes")


# --------------------------------------------------------------------------------------------
# Synthetic datasets in the real on-disk formats
# --------------------------------------------------------------------------------------------


def _blobs(rng: np.random.Generator, hw: tuple[int, int], k: int, cell: int = 64) -> np.ndarray:
  """int64 [h, w] in 0..k-1: blob-shaped regions (argmax of k smooth random fields)."""
  import cv2  # pylint: disable=g-import-not-at-top

  h, w = hw
  coarse = rng.random((h // cell + 2, w // cell + 2, k)).astype(np.float32)
  fields = np.stack(
      [cv2.resize(coarse[..., c], (w, h), interpolation=cv2.INTER_CUBIC) for c in range(k)], -1
  )
  return fields.argmax(-1)


def _smooth(rng: np.random.Generator, hw: tuple[int, int], cell: int = 96) -> np.ndarray:
  """float32 [h, w] in about [0, 1]: a smooth random field."""
  import cv2  # pylint: disable=g-import-not-at-top

  h, w = hw
  coarse = rng.random((h // cell + 2, w // cell + 2)).astype(np.float32)
  return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)


def _photo(rng: np.random.Generator, regions: np.ndarray) -> np.ndarray:
  """uint8 [h, w, 3]: a colour per region, smooth shading, slight blur and sensor noise."""
  import cv2  # pylint: disable=g-import-not-at-top

  colours = rng.integers(30, 226, (int(regions.max()) + 1, 3)).astype(np.float32)
  shading = 0.6 + 0.8 * _smooth(rng, regions.shape)[..., None]
  image = cv2.GaussianBlur(colours[regions] * shading, (5, 5), 1.0)
  image = image + rng.normal(0.0, 4.0, image.shape)
  return np.clip(image, 0, 255).astype(np.uint8)


def _boundaries(labels: np.ndarray) -> np.ndarray:
  """bool [h, w]: pixels whose right or lower neighbour has another label."""
  edge = np.zeros(labels.shape, bool)
  edge[:, :-1] |= labels[:, 1:] != labels[:, :-1]
  edge[:-1] |= labels[1:] != labels[:-1]
  return edge


def _depth_and_normals(rng: np.random.Generator, hw: tuple[int, int]):
  """Metres in [0.5, 10) with ~2% 0 (invalid), [h, w]; unit normals of that surface, [h, w, 3]."""
  depth = 0.5 + 9.0 * np.clip(_smooth(rng, hw), 0.0, 0.999)
  gy, gx = np.gradient(depth * 50.0)
  normal = np.stack([-gx, -gy, np.ones_like(depth)], -1)
  normal /= np.linalg.norm(normal, axis=-1, keepdims=True)
  depth = np.where(rng.random(hw) < 0.02, 0.0, depth)
  return depth.astype(np.float32), normal.astype(np.float32)


def _save(path: Path, array: np.ndarray, **kwargs) -> None:
  from PIL import Image  # pylint: disable=g-import-not-at-top

  Image.fromarray(array).save(path, **kwargs)


# NYUD-MT archive -> the frame size written: mtinet 480x640 (MT-CP resizes to it); atrc 425x560
# (ATRC's declared size, padded to 448x576 by ATRC / InvPT).
NYUDMT_SIZES = {"mtinet": (480, 640), "atrc": (425, 560)}


def write_nyudmt(root: Path, n: int, rng: np.random.Generator, archive: str = "mtinet") -> None:
  """NYUD-MT (``mtjax.data.nyudmt``), ``gt_sets/train.txt`` and per id, in archive mtinet:
  ``images`` jpg, ``segmentation`` png (L, 0 unlabelled, 1..40), ``depth`` npy float32 [h, w]
  metres, ``normals`` npy float32 [h, w, 3], ``edge`` npy float32 [h, w] in {0, 1}; in archive
  atrc: images png, normals png (RGB, 2 v / 255 - 1), edge png (L, {0, 255})."""
  hw = NYUDMT_SIZES[archive]
  for folder in ("gt_sets", "images", "segmentation", "depth", "normals", "edge"):
    (root / folder).mkdir(parents=True, exist_ok=True)
  ids = [f"{k + 1:04d}" for k in range(n)]
  (root / "gt_sets" / "train.txt").write_text("".join(f"{i}\n" for i in ids))
  for i in ids:
    regions = _blobs(rng, hw, 12)
    classes = rng.integers(1, 41, 12)
    classes[0] = 0  # One region unlabelled.
    semseg = classes[regions].astype(np.uint8)
    depth, normal = _depth_and_normals(rng, hw)
    edge = _boundaries(semseg)
    _save(root / "segmentation" / f"{i}.png", semseg, format="PNG")
    np.save(root / "depth" / f"{i}.npy", depth)
    if archive == "mtinet":
      _save(root / "images" / f"{i}.jpg", _photo(rng, regions), format="JPEG", quality=90)
      np.save(root / "normals" / f"{i}.npy", normal)
      np.save(root / "edge" / f"{i}.npy", edge.astype(np.float32))
    else:
      _save(root / "images" / f"{i}.png", _photo(rng, regions), format="PNG")
      _save(root / "normals" / f"{i}.png", np.round(127.5 * (normal + 1)).astype(np.uint8))
      _save(root / "edge" / f"{i}.png", edge.astype(np.uint8) * np.uint8(255))


def _pascal_sizes(rng: np.random.Generator, n: int) -> list[tuple[int, int]]:
  """PASCAL VOC-like sizes: long side 500, short side 300..375, 70% landscape."""
  sizes = []
  for _ in range(n):
    short = int(rng.integers(300, 376))
    sizes.append((short, 500) if rng.random() < 0.7 else (500, short))
  return sizes


def _part_struct(objects) -> np.ndarray:
  """PASCAL-Part's ``anno`` struct as ``scipy.io.loadmat`` gives it back (``anno[0][0][1][0]``
  are the objects, each (class, class_ind, mask, parts), parts (part_name, mask))."""
  obj_array = np.empty(
      (1, len(objects)), dtype=[("class", "O"), ("class_ind", "O"), ("mask", "O"), ("parts", "O")]
  )
  for j, (name, class_ind, mask, parts) in enumerate(objects):
    if parts:
      part_array = np.empty((1, len(parts)), dtype=[("part_name", "O"), ("mask", "O")])
      for p, (part_name, part_mask) in enumerate(parts):
        part_array[0, p] = (part_name, part_mask.astype(np.uint8))
    else:
      part_array = np.zeros((0, 0))  # MATLAB's [] for an object without parts.
    obj_array[0, j] = (name, np.array([[class_ind]], np.uint8), mask.astype(np.uint8), part_array)
  anno = np.empty((1, 1), dtype=[("imname", "O"), ("objects", "O")])
  anno[0, 0] = ("synthetic", obj_array)
  return anno


def write_pascal_context(root: Path, n: int, rng: np.random.Generator) -> None:
  """PASCAL_MT (``mtjax.data.pascal_context``): ``ImageSets/Context/train.txt``; ``JPEGImages``
  jpg; ``semseg/pascal-context`` png (L, 0..20, 255 on boundaries); ``human_parts`` .mat (a person
  with 6 parts in half the images, else a dog); ``sal_distill`` png (L); ``normals_distill`` png
  (RGB); ``pascal-context/trainval`` .mat ``LabelMap`` uint16; ``db_info`` class tables."""
  import scipy.io  # pylint: disable=g-import-not-at-top

  for folder in (
      "ImageSets/Context",
      "JPEGImages",
      "semseg/pascal-context",
      "human_parts",
      "sal_distill",
      "normals_distill",
      "pascal-context/trainval",
      "db_info",
  ):
    (root / folder).mkdir(parents=True, exist_ok=True)
  # Class tables: context ids 1..459 by name, tvmonitor among them; the NYU table shares 169 names.
  context = {f"class{c:03d}": c for c in range(1, 460)}
  context["tvmonitor"] = context.pop("class427")
  nyu = {f"class{c:03d}": c for c in range(1, 170)}
  (root / "db_info" / "context_classes.json").write_text(json.dumps(context))
  (root / "db_info" / "nyu_classes.json").write_text(json.dumps(nyu))
  ids = [f"2008_{2 * k + 2:06d}" for k in range(n)]
  (root / "ImageSets" / "Context" / "train.txt").write_text("".join(f"{i}\n" for i in ids))
  for k, (i, hw) in enumerate(zip(ids, _pascal_sizes(rng, n))):
    regions = _blobs(rng, hw, 10)
    semseg = rng.integers(0, 21, 10)[regions].astype(np.uint8)
    semseg[_boundaries(regions)] = 255
    labelmap = rng.integers(1, 460, 10)[regions].astype(np.uint16)
    _, normal = _depth_and_normals(rng, hw)
    _save(root / "JPEGImages" / f"{i}.jpg", _photo(rng, regions), format="JPEG", quality=90)
    _save(root / "semseg" / "pascal-context" / f"{i}.png", semseg, format="PNG")
    _save(root / "sal_distill" / f"{i}.png", (255 * _smooth(rng, hw).clip(0, 1)).astype(np.uint8))
    _save(root / "normals_distill" / f"{i}.png", np.round(127.5 * (normal + 1)).astype(np.uint8))
    scipy.io.savemat(root / "pascal-context" / "trainval" / f"{i}.mat", {"LabelMap": labelmap})
    body = regions == 0
    if k % 2 == 0:  # A person split into 6 horizontal bands of parts.
      rows = np.nonzero(body.any(1))[0]
      bands = np.linspace(rows.min(), rows.max() + 1, 7).astype(int) if rows.size else [0] * 7
      names = ("head", "torso", "luarm", "llarm", "ruleg", "rlleg")
      parts = []
      for p, name in enumerate(names):
        band = np.zeros(hw, bool)
        band[bands[p] : bands[p + 1]] = True
        parts.append((name, body & band))
      objects = [("person", 15, body, parts), ("dog", 12, regions == 1, [])]
    else:
      objects = [("dog", 12, body, [])]
    scipy.io.savemat(
        root / "human_parts" / f"{i}.mat", {"anno": _part_struct(objects)}, do_compression=True
    )


def write_mtan(root: Path, n: int, rng: np.random.Generator, dataset: str) -> None:
  """The MTAN .npy layout, float32: Cityscapes ``train/{image,label_7,depth}/{i}.npy`` at 128x256
  (7 classes, disparity), NYUv2 ``train/{image,label,depth,normal}/{i}.npy`` at 288x384."""
  hw, classes, label = (
      ((128, 256), 7, "label_7") if dataset == "cityscapes" else ((288, 384), 13, "label")
  )
  folders = ("image", label, "depth") + (("normal",) if dataset == "nyuv2" else ())
  for folder in folders:
    (root / "train" / folder).mkdir(parents=True, exist_ok=True)
  for i in range(n):
    regions = _blobs(rng, hw, 10, cell=32)
    labels = rng.integers(-1, classes, 10)[regions].astype(np.float32)
    depth, normal = _depth_and_normals(rng, hw)
    if dataset == "cityscapes":
      depth = np.where(depth > 0, 0.05 / np.maximum(depth, 0.5), 0.0).astype(np.float32)
    arrays = {"image": _photo(rng, regions).astype(np.float32) / 255.0, label: labels}
    arrays["depth"] = depth[..., None]
    if dataset == "nyuv2":
      arrays["normal"] = np.where((depth > 0)[..., None], normal, 0.0)
    for folder, array in arrays.items():
      np.save(root / "train" / folder / f"{i}.npy", array.astype(np.float32))


def write_synthetic(
    dataset: str, root: str | Path, n: int, seed: int = 0, archive: str = "mtinet"
) -> Path:
  """Writes ``n`` training examples of ``dataset`` in its real on-disk format and size under
  ``root`` (module docstring; ``archive``: NYUD-MT's, mtinet | atrc); returns ``root``."""
  root, rng = Path(root), np.random.default_rng(seed)
  if dataset == "nyudmt":
    write_nyudmt(root, n, rng, archive)
  elif dataset == "pascal_context":
    write_pascal_context(root, n, rng)
  elif dataset in ("cityscapes", "nyuv2"):
    write_mtan(root, n, rng, dataset)
  else:
    raise ValueError(f"--synthetic supports {SYNTHETIC}, not {dataset!r}")
  return root


# --------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--dataset", default="nyuv2", choices=tuple(CONFIGS), help="default: nyuv2")
  p.add_argument(
      "--data_dir",
      default="",
      help="the dataset root (procedural_rooms: the TFDS data dir, '' = TFDS's default; "
      "others: '' = the config's data_dir); not with --synthetic",
  )
  p.add_argument(
      "--synthetic",
      type=int,
      metavar="N",
      help=f"write N synthetic training examples in the real format and size ({', '.join(SYNTHETIC)}) "
      "to a temporary folder and read those",
  )
  p.add_argument(
      "--geometry",
      choices=("resize", "pad"),
      help="nyudmt, pascal_context: resize (the configs', MT-CP) | pad (ATRC / InvPT: centre "
      "padding, scale_pad augmentation with photometric distortion, NYUD-MT's atrc archive)",
  )
  p.add_argument(
      "--archive",
      choices=("mtinet", "atrc", "astmt"),
      help="nyudmt: the archive's format (default: mtinet, with --geometry pad atrc; "
      "--synthetic writes mtinet | atrc)",
  )
  p.add_argument("--batch_size", type=int, default=8, help="examples per batch (default 8)")
  p.add_argument("--batches", type=int, default=20, help="batches per timed run (default 20)")
  p.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up (default 3)")
  args = p.parse_args(argv)
  if args.synthetic is not None:
    if args.dataset not in SYNTHETIC:
      p.error(f"--synthetic supports --dataset {' | '.join(SYNTHETIC)}")
    if args.synthetic < args.batch_size:
      p.error(f"--synthetic {args.synthetic} is fewer than one batch of {args.batch_size}")
    if args.data_dir:
      p.error("--synthetic writes its own data: give no --data_dir")
  if args.geometry is not None and args.dataset not in ("nyudmt", "pascal_context"):
    p.error("--geometry is for --dataset nyudmt | pascal_context")
  if args.archive is not None and args.dataset != "nyudmt":
    p.error("--archive is for --dataset nyudmt")
  if args.archive == "astmt" and args.synthetic is not None:
    p.error("--synthetic writes the mtinet or atrc archive, not astmt")
  return args


def make_config(args: argparse.Namespace, data_dir: str):
  """The dataset's config (``CONFIGS``) reading ``data_dir``."""
  config = importlib.import_module(f"configs.{CONFIGS[args.dataset]}").get_config()
  config.dataset.name = args.dataset
  if data_dir or args.dataset in ("nyuv2", "procedural_rooms"):
    config.dataset.data_dir = data_dir
  if args.dataset == "procedural_rooms":
    config.dataset.builder_config = "default"
  if args.geometry == "pad":  # The ATRC / InvPT setting (the configs' docstrings).
    config.dataset.geometry = "pad"
    config.augment.name = "scale_pad"
    config.augment.photometric = True
    if args.dataset == "nyudmt":
      config.dataset.archive = "atrc"
  if args.archive is not None:
    config.dataset.archive = args.archive
  return config


def benchmark(args: argparse.Namespace, data_dir: str) -> float:
  """Builds the pipeline of ``args.dataset``'s config on ``data_dir``; prints and returns the
  median images/s."""
  from mtjax import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  from mtjax.data import augment, label_settings, pipeline, sources  # pylint: disable=g-import-not-at-top

  config = make_config(args, data_dir)
  t0 = time.perf_counter()
  source = sources.create_source(config, config.dataset.train_split)  # Checks the whole layout.
  print(
      f"reader built (layout checked) in {time.perf_counter() - t0:.2f} s for "
      f"{source.num_examples} examples",
      flush=True,
  )
  # Every label used ("full"), drawn over the dataset's tasks and then the config's selected.
  mask = label_settings.resolve_label_mask(
      "full",
      num_examples=source.num_examples,
      dataset_tasks=getattr(source, "label_tasks", source.tasks),
      tasks=tuple(config.tasks),
      seed=0,
  )
  options = augment.options(config.augment)
  ds = pipeline.train_dataset(
      source,
      label_mask=mask,
      per_process_batch_size=args.batch_size,
      seed=0,
      tasks=tasks_lib.from_config(config),
      **options,
  )
  it = ds.as_numpy_iterator()
  rates = []
  for r in range(args.repeats + 1):
    t0 = time.perf_counter()
    for _ in range(args.batches):
      next(it)
    rate = args.batches * args.batch_size / (time.perf_counter() - t0)
    if r:  # The first run warms up tf.data.
      rates.append(rate)
      print(f"run {r}: {rate:.1f} images/s", flush=True)
  h, w = source.image_shape
  geometry = f", {config.dataset.geometry}" if args.dataset in ("nyudmt", "pascal_context") else ""
  used = ("scale_range", "photometric") if options["augmentation"] == "scale_pad" else ("scales",)
  augmentation = ", ".join(f"{k} {options[k]}" for k in ("augmentation", *used, "flip"))
  median = float(np.median(rates))
  print(
      f"{args.dataset} {source.num_examples} examples at {h}x{w}{geometry}, tasks "
      f"{tuple(source.tasks)}, batch {args.batch_size}, {augmentation}: {median:.1f} images/s "
      f"(median of {args.repeats}, {os.cpu_count()} CPUs)"
  )
  return median


def main(argv=None) -> None:
  args = parse_args(argv)
  if args.synthetic is None:
    benchmark(args, args.data_dir)
    return
  with tempfile.TemporaryDirectory(prefix=f"synthetic_{args.dataset}_") as tmp:
    t0 = time.perf_counter()
    write_synthetic(
        args.dataset, tmp, args.synthetic, archive=make_config(args, "").dataset.archive
    )
    print(
        f"wrote {args.synthetic} synthetic {args.dataset} examples to {tmp} in "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    benchmark(args, tmp)


if __name__ == "__main__":
  main()
