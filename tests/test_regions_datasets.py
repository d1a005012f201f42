"""Region maps on NYUD-MT, PASCAL-Context and Cityscapes: ``tools/export_regions.py --dataset``
exports the images the training pipeline reads (fitted to the canvas), and the pipeline reads
those maps back (``regions.source = "files"``); ``patch`` and ``semantic_gt`` regions work on the
three datasets too. Tiny datasets from the fixture writers, superpixels (fast)."""

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtjax import tasks as tasks_lib
from mtjax.data import augment, label_settings, pipeline, region_export, regions, sources
from tests.data_fixtures import make_cityscapes_layout, make_nyuv2_layout
from tests.nyudmt_fixtures import make_nyudmt_layout
from tests.pascal_fixtures import make_pascal_layout

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import export_regions  # noqa: E402  pylint: disable=g-import-not-at-top

SPLITS = {"train": 4, "val": 2}
SUPERPIXELS = {"scale": 50.0, "min_size": 10}
# name -> (fixture writer, canvas size or None, geometry or None). NYUD-MT: images of
# 18..24 x 26..32 resized to 24x32 (MT-CP); PASCAL: the fixture's 20x28, 26x18, 16x22
# centre-padded to 28x32 (InvPT's geometry); Cityscapes: 24x32 as stored. Augmentation: the
# configs' (centre_zoom, centre_zoom, scale_crop).
DATASETS = {
    "nyudmt": (
        lambda root: make_nyudmt_layout(root, splits=SPLITS, hw=(24, 32), size_jitter=6),
        (24, 32),
        "resize",
    ),
    "pascal_context": (lambda root: make_pascal_layout(root, splits=SPLITS), (28, 32), "pad"),
    "cityscapes": (
        lambda root: make_cityscapes_layout(root, splits=SPLITS, hw=(24, 32)),
        None,
        None,
    ),
}


def _training_config(name, data_dir):
  """The dataset's own config (configs/{name}.py), as training would run it on the tiny data."""
  _, size, geometry = DATASETS[name]
  config = importlib.import_module(f"configs.{name}").get_config()
  config.dataset.data_dir = str(data_dir)
  if size is not None:
    config.dataset.size = size
    config.dataset.geometry = geometry
  return config


def _export_argv(name, data_dir, out):
  _, size, geometry = DATASETS[name]
  argv = [
      "--method=superpixel",
      f"--dataset={name}",
      f"--data_dir={data_dir}",
      f"--out={out}",
      f"--scale={SUPERPIXELS['scale']}",
      f"--min_size={SUPERPIXELS['min_size']}",
      "--no_progress",
  ]
  if size is not None:
    argv += ["--size", str(size[0]), str(size[1]), f"--geometry={geometry}"]
  return argv


def _first_batch(config, source, spec):
  mask = label_settings.resolve_label_mask(
      "full",
      num_examples=source.num_examples,
      dataset_tasks=getattr(source, "label_tasks", source.tasks),
      tasks=tuple(config.tasks),
      seed=0,
  )
  ds = pipeline.train_dataset(
      source,
      label_mask=mask,
      per_process_batch_size=2,
      seed=0,
      regions=spec,
      tasks=tasks_lib.from_config(config),
      **augment.options(config.augment),
  )
  return next(ds.as_numpy_iterator())


def _check_regions(batch, shape):
  ids = batch["regions"]
  assert ids.dtype == np.int32 and ids.shape == (2, *shape)
  for example in ids:
    assert example.max() >= 0, "every example has at least one region"
    assert example.min() >= -1


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_exported_maps_are_of_the_training_images_and_the_pipeline_reads_them(
    tmp_path, name, capsys
):
  data_dir = DATASETS[name][0](tmp_path / "data")
  out = tmp_path / "regions"
  assert export_regions.main(_export_argv(name, data_dir, out)) == 0, capsys.readouterr().err

  config = _training_config(name, data_dir)
  source = sources.create_source(config, "train")  # Every task of the config, as training.
  shape = tuple(source.image_shape)
  manifest = json.loads((out / "manifest.json").read_text())
  assert manifest["image_size"] == list(shape)
  assert manifest["counts"] == {"train": SPLITS["train"]}
  expected_source = {"dataset": name, "data_dir": str(Path(data_dir).resolve()), "split": "train"}
  if DATASETS[name][1] is not None:
    expected_source.update(role="train", geometry=DATASETS[name][2], size=list(shape))
    if name == "nyudmt":
      expected_source["archive"] = "mtinet"
  assert manifest["source"] == expected_source

  # The maps are the superpixels of exactly the images the pipeline loads, under its ids.
  method = region_export.Superpixels(**SUPERPIXELS)
  for index in (0, source.num_examples - 1):
    image = np.round(source.load(index)["image"] * 255.0).astype(np.uint8)
    with Image.open(regions.map_path(out, "train", source.example_id(index))) as png:
      np.testing.assert_array_equal(np.asarray(png), method(image))

  spec = regions.RegionSpec(source="files", dir=str(out), max_regions=8, min_pixels=1)
  _check_regions(_first_batch(config, source, spec), shape)


@pytest.mark.parametrize("name", sorted(DATASETS))
@pytest.mark.parametrize("region_source", ["patch", "semantic_gt"])
def test_patch_and_semantic_regions_through_the_pipeline(tmp_path, name, region_source):
  config = _training_config(name, DATASETS[name][0](tmp_path / "data"))
  source = sources.create_source(config, "train")
  spec = regions.RegionSpec(source=region_source, patch_size=8, max_regions=8, min_pixels=1)
  _check_regions(_first_batch(config, source, spec), tuple(source.image_shape))


@pytest.mark.parametrize("region_source", ["patch", "files"])
def test_invpt_setting_pad_and_scale_pad(tmp_path, region_source):
  """PASCAL in InvPT's setting (pad + scale_pad, which crops by the example's box)."""
  data_dir = make_pascal_layout(tmp_path / "data", splits=SPLITS)
  out = tmp_path / "regions"
  assert export_regions.main(_export_argv("pascal_context", data_dir, out)) == 0
  config = _training_config("pascal_context", data_dir)
  config.augment.name = "scale_pad"
  source = sources.create_source(config, "train")
  spec = regions.RegionSpec(
      source=region_source, dir=str(out), patch_size=8, max_regions=8, min_pixels=1
  )
  _check_regions(_first_batch(config, source, spec), tuple(source.image_shape))


def test_maps_of_another_fitting_are_refused_and_flags_checked(tmp_path, capsys):
  data_dir = make_pascal_layout(tmp_path / "data", splits=SPLITS)
  out = tmp_path / "regions"
  argv = _export_argv("pascal_context", data_dir, out)
  assert export_regions.main(argv) == 0
  capsys.readouterr()
  resized = [a for a in argv if not a.startswith("--geometry")] + ["--geometry=resize"]
  assert export_regions.main(resized) == 2
  assert "fitted otherwise (geometry: 'pad' vs 'resize')" in capsys.readouterr().err
  assert export_regions.main([*resized, "--overwrite"]) == 0
  assert json.loads((out / "manifest.json").read_text())["source"]["geometry"] == "resize"

  base = ["--method=superpixel", f"--out={tmp_path / 'other'}", "--no_progress"]
  cases = {
      ("--dataset=cityscapes", f"--data_dir={data_dir}", "--geometry=pad"): "takes no --geometry",
      ("--dataset=pascal_context", f"--data_dir={data_dir}", "--archive=atrc"): "no --archive",
      ("--dataset=nyudmt",): "needs --data_dir",
      ("--dataset=nyudmt", f"--data_dir={data_dir}"): "NYUD-MT split file",
      ("--dataset=nyudmt", f"--images={data_dir}"): "--images takes no",
  }
  for flags, message in cases.items():
    assert export_regions.main([*base, *flags]) == 2, flags
    assert message in capsys.readouterr().err, flags


def test_dataset_nyuv2_is_data_dir_alone(tmp_path):
  data_dir = make_nyuv2_layout(tmp_path / "data", splits={"train": 2})
  for out, flags in (("a", []), ("b", ["--dataset=nyuv2"])):
    argv = ["--method=superpixel", f"--data_dir={data_dir}", f"--out={tmp_path / out}", *flags]
    assert export_regions.main([*argv, "--no_progress"]) == 0
  for example_id in ("0", "1"):
    a, b = ((tmp_path / out / "train" / f"{example_id}.png").read_bytes() for out in ("a", "b"))
    assert a == b
  manifests = [json.loads((tmp_path / out / "manifest.json").read_text()) for out in "ab"]
  assert manifests[0]["source"] == manifests[1]["source"]
