"""Exports region maps ahead of training, in the format of docs/regions.md.

    # SAM (pip install -e ".[sam]"), NYUv2 in the MTAN layout, official ViT-H weights:
    python tools/export_regions.py --method sam --checkpoint sam_vit_h_4b8939.pth \
        --model_type vit_h --data_dir data/nyuv2 --split train --out regions/nyuv2_sam
    # Weight-free superpixels (scikit-image):
    python tools/export_regions.py --method superpixel --data_dir data/nyuv2 --split train \
        --out regions/nyuv2_fz
    # NYUD-MT / PASCAL-Context / Cityscapes: the images the training pipeline sees (the canvas of
    # configs/nyudmt.py, configs/pascal_context.py: resize to 480x640, 512x512):
    python tools/export_regions.py --method superpixel --dataset nyudmt --data_dir data/NYUD_MT \
        --out regions/nyudmt_fz
    python tools/export_regions.py --method superpixel --dataset pascal_context \
        --data_dir data/PASCAL_MT --geometry pad --out regions/pascal_pad_fz
    python tools/export_regions.py --method superpixel --dataset cityscapes \
        --data_dir data/cityscapes --out regions/cityscapes_fz
    # The generated dataset, or a folder of images:
    python tools/export_regions.py --method superpixel --tfds procedural_rooms --split train --out R
    python tools/export_regions.py --method superpixel --images photos/ --out R

``--dataset NAME`` exports the images of ``split`` exactly as the training pipeline reads them
before augmentation (``mtjax.data.sources.create_source`` with ``config.dataset.name = NAME``, in
the training role): NYUD-MT and PASCAL-Context images are fitted to the canvas by ``--geometry``
(resize | pad, as ``config.dataset.geometry``) at ``--size H W`` (default: the dataset's canvas of
that geometry, ``sources.DEFAULT_SIZES``), NYUD-MT read from archive ``--archive``. Train with the
same ``config.dataset.geometry`` / ``size`` / ``archive``: maps made for one fitting are wrong for
another (the manifest records it, and a directory of another fitting is refused). ``--data_dir``
without ``--dataset`` (or ``--tfds``) is NYUv2 in the MTAN layout (``--dataset nyuv2``).

Training reads the maps with ``config.regions.source = "files"``, ``config.regions.dir = OUT``.

``--num_shards K --shard_index i`` splits one export over K processes or hosts (one GPU each:
``CUDA_VISIBLE_DEVICES=i``) writing the same ``--out``; finished maps are skipped, so rerunning
an interrupted export completes it. ``--overwrite`` recomputes every map of the run and accepts a
directory exported with other parameters (to resume an interrupted ``--overwrite`` run, rerun
without it). The loop, sources and superpixels: ``mtjax.data.region_export``; the format:
``mtjax.data.regions``.

SAM (Kirillov et al., ICCV 2023) runs here through ``segment_anything``'s
``SamAutomaticMaskGenerator``; its masks overlap and are painted largest first, so the smaller
mask wins (``regions.paint_masks``). ``--model_type`` is a key of
``segment_anything.sam_model_registry`` (vit_h, vit_l, vit_b). The checkpoint must be the state
dict of that model (the official ``sam_vit_{h,l,b}_*.pth`` files are); its SHA-256 goes to the
manifest. ``points_per_batch`` and ``--device`` change speed and memory, not the maps, and are not
compared between runs.

Exit status: 0 done; 1 images were skipped as unreadable (``--skip_bad``; listed); 2 an error
(the message says what was wrong and what was expected).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # Run from a checkout, uninstalled.

from mtjax import fileio  # pylint: disable=g-import-not-at-top  # noqa: E402
from mtjax.data import region_export, regions  # pylint: disable=g-import-not-at-top  # noqa: E402
from mtjax.data.region_export import ExportError  # pylint: disable=g-import-not-at-top  # noqa: E402

# --dataset: config.dataset.name values, and the task each reads (its first: semseg everywhere).
DATASETS = ("nyuv2", "nyudmt", "pascal_context", "cityscapes")
FIRST_TASK = {"nyudmt": "semseg", "pascal_context": "semseg", "cityscapes": "semseg"}
FITTED_DATASETS = ("nyudmt", "pascal_context")  # Variable-size: fitted to a canvas.
SAM_EXTRA = 'pip install -e ".[sam]"  (segment-anything, torch==2.14.*, torchvision==0.29.*)'
# Official encoder widths: what a checkpoint's patch embedding says its model type is.
_EMBED_DIM_TO_TYPE = {1280: "vit_h", 1024: "vit_l", 768: "vit_b"}


def sha256(path: str | os.PathLike, chunk: int = 1 << 24) -> str:
  """Hex SHA-256 of a file (a local path or a gs:// URL), read in 16 MiB chunks."""
  digest = hashlib.sha256()
  with fileio.as_path(path).open("rb") as f:
    while block := f.read(chunk):
      digest.update(block)
  return digest.hexdigest()


def _import_sam():
  try:
    import segment_anything  # pylint: disable=g-import-not-at-top
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise ExportError(
        f"--method sam needs torch, torchvision and segment_anything ({e}); install the extra: "
        f"{SAM_EXTRA}"
    ) from e
  return torch, segment_anything


def load_sam(model_type: str, checkpoint: str | os.PathLike, device: str):
  """Builds ``sam_model_registry[model_type]`` and loads ``checkpoint`` into it, strictly.

  Returns:
    The ``Sam`` module in eval mode on ``device``.

  Raises:
    ExportError: torch / segment_anything missing; an unknown model type; the checkpoint missing,
      unreadable, or not this model's state dict (naming a few missing, unexpected and
      mis-shaped keys, and the model type the checkpoint looks like).
  """
  torch, segment_anything = _import_sam()
  registry = segment_anything.sam_model_registry
  if model_type not in registry:
    raise ExportError(f"--model_type {model_type!r} is not one of {sorted(registry)}")
  checkpoint = fileio.as_path(checkpoint)
  if not checkpoint.is_file():
    raise ExportError(
        f"SAM checkpoint {checkpoint} does not exist; download the official {model_type} weights "
        "(github.com/facebookresearch/segment-anything, 'Model Checkpoints') and pass --checkpoint"
    )
  try:
    with checkpoint.open("rb") as f:
      state = torch.load(f, map_location="cpu", weights_only=True)
  except Exception as e:  # pickle / zip errors of all kinds.
    raise ExportError(f"SAM checkpoint {checkpoint} cannot be read by torch.load ({e})") from e
  if not isinstance(state, dict) or not all(hasattr(v, "shape") for v in state.values()):
    raise ExportError(
        f"SAM checkpoint {checkpoint} is not a state dict (a mapping of parameter names to "
        f"tensors); got {type(state).__name__}"
    )
  model = registry[model_type]()
  expected = model.state_dict()
  missing = sorted(set(expected) - set(state))
  unexpected = sorted(set(state) - set(expected))
  shapes = [
      f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
      for k in sorted(set(state) & set(expected))
      if tuple(state[k].shape) != tuple(expected[k].shape)
  ]
  if missing or unexpected or shapes:
    embed = state.get("image_encoder.patch_embed.proj.weight")
    guess = _EMBED_DIM_TO_TYPE.get(int(embed.shape[0])) if embed is not None else None
    hint = f" It looks like a {guess} checkpoint." if guess and guess != model_type else ""
    raise ExportError(
        f"SAM checkpoint {checkpoint} does not match --model_type {model_type}: "
        f"{len(missing)} missing keys {missing[:3]}, {len(unexpected)} unexpected keys "
        f"{unexpected[:3]}, {len(shapes)} shape mismatches (checkpoint vs model) {shapes[:3]}.{hint}"
    )
  model.load_state_dict(state)
  return model.to(device).eval()


@dataclasses.dataclass
class Sam:
  """The SAM method: ``SamAutomaticMaskGenerator`` masks, painted smaller-wins (docs/regions.md).

  Generator defaults are segment_anything's (tuned for ViT-H). Raises as ``load_sam``.
  """

  checkpoint: str  # A local path or a gs:// URL.
  model_type: str = "vit_h"
  points_per_side: int = 32
  pred_iou_thresh: float = 0.88
  stability_score_thresh: float = 0.95
  box_nms_thresh: float = 0.7
  min_mask_region_area: int = 0
  crop_n_layers: int = 0
  points_per_batch: int = 64
  device: str | None = None

  name = "sam"

  def __post_init__(self):
    torch, segment_anything = _import_sam()
    if self.device is None:
      self.device = "cuda" if torch.cuda.is_available() else "cpu"
    model = load_sam(self.model_type, self.checkpoint, self.device)
    self._checkpoint_sha256 = sha256(self.checkpoint)
    if self.min_mask_region_area > 0:
      try:
        import cv2  # pylint: disable=g-import-not-at-top  # noqa: F401
      except ImportError as e:
        raise ExportError(
            f"--min_mask_region_area > 0 needs OpenCV (segment_anything's postprocessing): "
            f"{SAM_EXTRA} installs opencv-python-headless"
        ) from e
    self._torch = torch
    self._generator = segment_anything.SamAutomaticMaskGenerator(
        model,
        points_per_side=self.points_per_side,
        points_per_batch=self.points_per_batch,
        pred_iou_thresh=self.pred_iou_thresh,
        stability_score_thresh=self.stability_score_thresh,
        box_nms_thresh=self.box_nms_thresh,
        crop_n_layers=self.crop_n_layers,
        min_mask_region_area=self.min_mask_region_area,
    )

  @property
  def parameters(self) -> dict[str, Any]:
    keys = (
        "model_type",
        "points_per_side",
        "pred_iou_thresh",
        "stability_score_thresh",
        "box_nms_thresh",
        "min_mask_region_area",
        "crop_n_layers",
    )
    return {"checkpoint_sha256": self._checkpoint_sha256, **{k: getattr(self, k) for k in keys}}

  @property
  def package_versions(self) -> dict[str, str]:
    return region_export.package_versions("segment-anything", "torch", "torchvision")

  def __call__(self, image: np.ndarray) -> np.ndarray:
    with self._torch.inference_mode():
      records = self._generator.generate(image)
    masks = np.zeros((len(records), *image.shape[:2]), bool)
    for i, record in enumerate(records):
      masks[i] = record["segmentation"]
    return regions.paint_masks(masks)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
  p = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("--method", required=True, choices=("sam", "superpixel"))
  src = p.add_argument_group("input (one of)")
  src.add_argument(
      "--dataset",
      choices=DATASETS,
      help="a dataset in its on-disk layout under --data_dir, read as the training pipeline reads "
      "it (default with --data_dir alone: nyuv2)",
  )
  src.add_argument(
      "--data_dir",
      help="the dataset root (--dataset; alone: NYUv2, MTAN layout); with --tfds: the TFDS data dir",
  )
  src.add_argument("--tfds", metavar="NAME[/CONFIG]", help="a TFDS dataset, e.g. procedural_rooms")
  src.add_argument("--images", metavar="DIR", help="a folder of images (ids: file stems)")
  src.add_argument("--split", default="train", help="split to export (default: train)")
  fit = p.add_argument_group("--dataset nyudmt | pascal_context (defaults: as the configs)")
  fit.add_argument(
      "--geometry",
      choices=("resize", "pad"),
      help="fitting to the canvas, config.dataset.geometry (default: resize)",
  )
  fit.add_argument(
      "--size",
      type=int,
      nargs=2,
      metavar=("H", "W"),
      help="the canvas, config.dataset.size (default: the dataset's of --geometry: NYUD-MT "
      "480x640 resize / 448x576 pad, PASCAL 512x512)",
  )
  fit.add_argument(
      "--archive",
      choices=("mtinet", "atrc", "astmt"),
      help="nyudmt: the archive's format, config.dataset.archive (default: mtinet)",
  )
  out = p.add_argument_group("output")
  out.add_argument(
      "--out",
      required=True,
      help="region directory (docs/regions.md): a local path or gs://BUCKET/...",
  )
  out.add_argument("--limit", type=int, help="only the first N examples of the split")
  out.add_argument("--num_shards", type=int, default=1)
  out.add_argument("--shard_index", type=int, default=0)
  out.add_argument("--overwrite", action="store_true")
  out.add_argument("--skip_bad", action="store_true", help="skip unreadable images, list them")
  out.add_argument("--no_progress", action="store_true", help="no tqdm bar")
  sam = p.add_argument_group("--method sam")
  sam.add_argument("--checkpoint", help="SAM state dict (.pth)")
  sam.add_argument("--model_type", default="vit_h", help="vit_h | vit_l | vit_b")
  sam.add_argument("--points_per_side", type=int, default=32)
  sam.add_argument("--pred_iou_thresh", type=float, default=0.88)
  sam.add_argument("--stability_score_thresh", type=float, default=0.95)
  sam.add_argument("--box_nms_thresh", type=float, default=0.7)
  sam.add_argument("--min_mask_region_area", type=int, default=0)
  sam.add_argument("--crop_n_layers", type=int, default=0)
  sam.add_argument("--points_per_batch", type=int, default=64)
  sam.add_argument("--device", help="cuda if available, else cpu")
  sp = p.add_argument_group("--method superpixel (defaults: mtjax.data.region_export.Superpixels)")
  sp.add_argument("--superpixel", default="felzenszwalb", choices=("felzenszwalb", "slic"))
  sp.add_argument("--scale", type=float, default=300.0, help="felzenszwalb")
  sp.add_argument("--sigma", type=float, default=0.8, help="felzenszwalb and slic")
  sp.add_argument("--min_size", type=int, default=100, help="felzenszwalb, pixels")
  sp.add_argument("--n_segments", type=int, default=64, help="slic")
  sp.add_argument("--compactness", type=float, default=10.0, help="slic")
  return p.parse_args(argv)


def dataset_config(args: argparse.Namespace):
  """The config (``configs/default.py``) whose ``create_source(config, args.split)`` reads the
  split as training does: ``config.dataset`` from the flags, ``train_split = args.split`` (the
  training role), and only the dataset's first task (a reader needs one; the image does not
  depend on the tasks, and no other task's files are opened)."""
  from configs import default  # pylint: disable=g-import-not-at-top

  config = default.get_config()
  config.dataset.name = args.dataset
  config.dataset.data_dir = args.data_dir
  config.dataset.train_split = args.split
  config.tasks = (FIRST_TASK[args.dataset],)
  if args.geometry is not None:
    config.dataset.geometry = args.geometry
  if args.size is not None:
    config.dataset.size = tuple(args.size)
  if args.archive is not None:
    config.dataset.archive = args.archive
  return config


def dataset_images(args: argparse.Namespace) -> region_export.Images:
  """``--dataset``: the split through ``sources.create_source`` (``region_export.source_images``)."""
  fitted = args.dataset in FITTED_DATASETS
  given = [
      f"--{name}"
      for name in ("geometry", "size", "archive")
      if getattr(args, name) is not None
      and not (fitted and (name != "archive" or args.dataset == "nyudmt"))
  ]
  if given:
    raise ExportError(f"--dataset {args.dataset} takes no {' '.join(given)}")
  if args.dataset == "nyuv2":  # Only the image files (the same images and ids as NYUv2Split).
    return region_export.nyuv2_images(args.data_dir, args.split)
  # Imported here, after the method: sources imports jax and TFDS (see main).
  from mtjax.data import sources  # pylint: disable=g-import-not-at-top

  config = dataset_config(args)
  provenance = {}
  try:
    if fitted:
      provenance["role"] = "train"
      provenance["geometry"] = config.dataset.geometry
      provenance["size"] = list(sources.canvas_size(config))
      if args.dataset == "nyudmt":
        provenance["archive"] = config.dataset.archive
    source = sources.create_source(config, args.split)
  except (OSError, ValueError) as e:  # The readers name the path and the layout they expect.
    raise ExportError(f"--dataset {args.dataset} --data_dir {args.data_dir}: {e}") from e
  return region_export.source_images(
      source, args.dataset, args.data_dir, args.split, provenance=provenance
  )


def make_images(args: argparse.Namespace) -> region_export.Images:
  """The input the flags name. ``args`` may lack the ``--dataset`` flags (tools/draw_regions.py
  has only --data_dir, --tfds, --images, --split): they default to None."""
  defaults = {"dataset": None, "geometry": None, "size": None, "archive": None}
  args = argparse.Namespace(**{**defaults, **vars(args)})
  if args.images is not None:
    if args.tfds is not None or args.data_dir is not None or args.dataset is not None:
      raise ExportError("--images takes no --tfds, --dataset or --data_dir: give one input")
    return region_export.folder_images(args.images, args.split)
  if args.tfds is not None:
    if args.dataset is not None:
      raise ExportError("--tfds takes no --dataset: give one input")
    return region_export.tfds_images(args.tfds, args.split, args.data_dir)
  if args.data_dir is None:
    if args.dataset is not None:
      raise ExportError(f"--dataset {args.dataset} needs --data_dir (the dataset root)")
    raise ExportError(
        "give an input: --dataset NAME --data_dir DIR, --data_dir (NYUv2, MTAN layout), "
        "--tfds NAME or --images DIR"
    )
  if args.dataset is None:
    args.dataset = "nyuv2"
  return dataset_images(args)


def make_method(args: argparse.Namespace):
  if args.method == "superpixel":
    try:
      return region_export.Superpixels(
          algorithm=args.superpixel,
          scale=args.scale,
          sigma=args.sigma,
          min_size=args.min_size,
          n_segments=args.n_segments,
          compactness=args.compactness,
      )
    except ValueError as e:
      raise ExportError(str(e)) from e
  if args.checkpoint is None:
    raise ExportError(
        "--method sam needs --checkpoint PATH (a SAM state dict, e.g. sam_vit_h_*.pth)"
    )
  return Sam(
      checkpoint=args.checkpoint,
      model_type=args.model_type,
      points_per_side=args.points_per_side,
      pred_iou_thresh=args.pred_iou_thresh,
      stability_score_thresh=args.stability_score_thresh,
      box_nms_thresh=args.box_nms_thresh,
      min_mask_region_area=args.min_mask_region_area,
      crop_n_layers=args.crop_n_layers,
      points_per_batch=args.points_per_batch,
      device=args.device,
  )


def main(argv: list[str] | None = None) -> int:
  args = parse_args(argv)
  try:
    # The method first: torchvision (SAM) crashes a process that has imported TensorFlow
    # (--tfds), while the other order works; --dataset imports jax and TFDS (sources).
    method = make_method(args)
    images = make_images(args)
    report = region_export.export(
        images,
        method,
        args.out,
        limit=args.limit,
        num_shards=args.num_shards,
        shard_index=args.shard_index,
        overwrite=args.overwrite,
        skip_bad=args.skip_bad,
        progress=not args.no_progress,
    )
  except ExportError as e:
    print(f"export_regions: error: {e}", file=sys.stderr)
    return 2
  per_image = report.seconds / len(report.written) if report.written else float("nan")
  print(
      f"{args.out}/{images.split}: wrote {len(report.written)} maps ({per_image:.3f} s/image), "
      f"{len(report.existing)} existed, {len(report.bad)} unreadable"
  )
  if report.bad:
    print("unreadable images (skipped; no map written):", file=sys.stderr)
    for example_id, message in report.bad:
      print(f"  {example_id}: {message}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main())
