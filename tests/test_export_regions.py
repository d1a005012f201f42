"""Region export (tools/export_regions.py, mtjax.data.region_export): the numbering of the
format, superpixels on the real frames, SAM end to end with a tiny random model, resume, a killed
run, refusals and errors, shards, TFDS input, and training on the exported maps."""

import hashlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mtjax.data import region_export, regions
from tests.test_main import TINY, read_scalars, run_main

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT.parent / "shared" / "data" / "nyuv2_mini"
sys.path.insert(0, str(ROOT / "tools"))
import export_regions  # noqa: E402  pylint: disable=g-import-not-at-top

needs_mini = pytest.mark.skipif(
    not MINI.is_dir(), reason=f"real NYUv2 frames not found at {MINI} (../shared beside the repo)"
)


needs_sam = pytest.mark.skipif(
    # Not imported here: torchvision crashes a process that has imported TensorFlow.
    not all(importlib.util.find_spec(m) for m in ("segment_anything", "torch", "torchvision")),
    reason='segment_anything / torch not installed (pip install -e ".[sam]")',
)


def _check_map(path, shape):
  """A map as REGIONS.md says: uint16 of the image's size, dense ids 1..N by area, largest first."""
  with Image.open(path) as image:
    values = np.asarray(image)
  assert values.dtype == np.uint16 and values.shape == shape
  counts = np.bincount(values.ravel())[1:]
  assert (counts > 0).all(), "ids are dense: every id 1..N has pixels"
  assert (np.diff(counts) <= 0).all(), "id 1 is the largest region"
  return values


# --------------------------------------------------------------------------------------------
# The format's numbering
# --------------------------------------------------------------------------------------------


def test_paint_masks_smaller_wins_then_renumbers_by_painted_area():
  masks = np.zeros((4, 4, 6), bool)
  masks[0] = True  # 24 pixels: the background.
  masks[1, :, :3] = True  # 12 pixels, painted over by mask 2 except 4 pixels.
  masks[2, :, :2] = True  # 8 pixels.
  masks[2, 3, :3] = True  # ... 9 pixels.
  masks[3, 0, 0] = True  # 1 pixel, inside masks 1 and 2: the smallest wins.
  out = regions.paint_masks(masks)
  assert out.dtype == np.uint16
  # Painted areas: mask 0: 12, mask 2: 8, mask 1: 3, mask 3: 1 → ids 1, 2, 3, 4.
  expected = np.full((4, 6), 1)
  expected[:, :3] = 3
  expected[:, :2] = 2
  expected[3, :3] = 2
  expected[0, 0] = 4
  np.testing.assert_array_equal(out, expected)
  # A mask wholly covered by smaller ones disappears; no mask → all zero.
  covered = np.stack([masks[2], masks[2] & ~masks[3], masks[3]])
  assert set(np.unique(regions.paint_masks(covered))) == {0, 1, 2}
  np.testing.assert_array_equal(regions.paint_masks(np.zeros((0, 3, 5), bool)), 0)
  with pytest.raises(ValueError, match=r"bool \[M, H, W\]"):
    regions.paint_masks(np.ones((3, 5)))


def test_renumber_by_area_ties_background_and_too_many_regions():
  labels = np.array([[0, 9, 9, 4], [7, 7, 4, 0], [-1, 9, 7, 4]])
  # Areas: 9 → 3, 7 → 3, 4 → 3: all tie, so the smaller label first: 4 → 1, 7 → 2, 9 → 3.
  np.testing.assert_array_equal(
      regions.renumber_by_area(labels), [[0, 3, 3, 1], [2, 2, 1, 0], [0, 3, 2, 1]]
  )
  with pytest.raises(ValueError, match="do not fit a uint16 map"):
    regions.renumber_by_area(np.arange(1, 256 * 257 + 1).reshape(256, 257))


# --------------------------------------------------------------------------------------------
# Superpixels on the real frames, resume, shards
# --------------------------------------------------------------------------------------------


@needs_mini
@pytest.mark.parametrize("algorithm", ["felzenszwalb", "slic"])
def test_superpixel_export_on_real_frames_then_resume_skips_everything(tmp_path, algorithm, capsys):
  out = tmp_path / "regions"
  argv = ["--method=superpixel", f"--superpixel={algorithm}", f"--data_dir={MINI}", f"--out={out}"]
  assert export_regions.main([*argv, "--no_progress"]) == 0
  num = len(list((MINI / "train" / "image").glob("*.npy")))
  paths = sorted((out / "train").glob("*.png"))
  assert [p.stem for p in paths] == sorted(str(i) for i in range(num))
  for path in paths:
    values = _check_map(path, (288, 384))
    assert 8 <= values.max() <= 400  # Object-sized regions, not pixels, not one blob.
    # The pipeline's reader accepts it (−1 = none; superpixels cover every pixel).
    assert (regions.read_map(path, path.stem, (288, 384)) >= 0).all()
  manifest = regions.read_manifest(out)
  assert manifest["method"] == "superpixel" and manifest["parameters"]["algorithm"] == algorithm
  assert manifest["image_size"] == [288, 384] and manifest["counts"] == {"train": num}
  assert manifest["source"]["dataset"] == "nyuv2" and manifest["source"]["split"] == "train"
  assert manifest["seconds_per_image"] > 0 and "scikit-image" in manifest["package_versions"]

  mtimes = [p.stat().st_mtime_ns for p in paths]
  capsys.readouterr()
  assert export_regions.main([*argv, "--no_progress"]) == 0
  printed = capsys.readouterr().out
  assert "wrote 0 maps" in printed and f"{num} existed" in printed
  assert [p.stat().st_mtime_ns for p in paths] == mtimes
  assert regions.read_manifest(out)["counts"] == {"train": num}


@needs_mini
def test_shards_split_the_export_and_merge_the_manifest(tmp_path):
  out = tmp_path / "regions"
  reports = [
      region_export.export(
          region_export.nyuv2_images(MINI, "train"),
          region_export.Superpixels(),
          out,
          num_shards=2,
          shard_index=i,
          limit=5,
          progress=False,
      )
      for i in range(2)
  ]
  assert reports[0].written == ["0", "2", "4"] and reports[1].written == ["1", "3"]
  manifest = regions.read_manifest(out)
  assert manifest["counts"] == {"train": 5} and manifest["timing"]["train"]["images"] == 5
  with pytest.raises(
      region_export.ExportError, match=r"--shard_index must be in \[0, --num_shards\)"
  ):
    region_export.export(
        region_export.nyuv2_images(MINI, "train"),
        region_export.Superpixels(),
        out,
        num_shards=2,
        shard_index=2,
    )


@needs_mini
def test_changed_parameters_are_refused_unless_overwrite(tmp_path, capsys):
  out = tmp_path / "regions"
  base = ["--method=superpixel", f"--data_dir={MINI}", f"--out={out}", "--limit=2", "--no_progress"]
  assert export_regions.main(base) == 0
  before = (out / "train" / "0.png").read_bytes()
  capsys.readouterr()
  assert export_regions.main([*base, "--scale=50"]) == 2
  err = capsys.readouterr().err
  assert "other parameters" in err and "scale: 300.0 vs 50.0" in err and "--overwrite" in err
  assert (out / "train" / "0.png").read_bytes() == before  # Nothing was touched.
  assert export_regions.main([*base, "--method=superpixel", "--superpixel=slic"]) == 2
  assert export_regions.main([*base, "--scale=50", "--overwrite"]) == 0
  assert (out / "train" / "0.png").read_bytes() != before  # Recomputed under the new scale.
  assert regions.read_manifest(out)["parameters"]["scale"] == 50.0
  # A directory of an unknown format is refused.
  other = tmp_path / "other"
  other.mkdir()
  (other / "manifest.json").write_text(json.dumps({"format": "someone-else/3"}))
  assert export_regions.main(["--method=superpixel", f"--data_dir={MINI}", f"--out={other}"]) == 2
  assert "someone-else/3" in capsys.readouterr().err


def test_bad_images_are_named_and_skip_bad_lists_them(tmp_path, capsys):
  images = tmp_path / "images"
  images.mkdir()
  rng = np.random.default_rng(0)
  for name in ("a", "c"):
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), np.uint8)).save(images / f"{name}.png")
  (images / "b.jpg").write_bytes(b"not a jpeg at all")
  out = tmp_path / "regions"
  argv = ["--method=superpixel", f"--images={images}", f"--out={out}", "--no_progress"]
  assert export_regions.main(argv) == 2
  err = capsys.readouterr().err
  assert "'b'" in err and str(images / "b.jpg") in err and "--skip_bad" in err
  assert export_regions.main([*argv, "--skip_bad"]) == 1
  err = capsys.readouterr().err
  assert "unreadable images" in err and "b:" in err
  assert sorted(p.name for p in (out / "train").glob("*.png")) == ["a.png", "c.png"]
  assert regions.read_manifest(out)["image_size"] == [24, 32]


def test_a_killed_writers_temporaries_are_removed_and_its_map_computed(tmp_path, capsys):
  images = tmp_path / "images"
  images.mkdir()
  rng = np.random.default_rng(0)
  for name in ("a", "b"):
    Image.fromarray(rng.integers(0, 256, (24, 32, 3), np.uint8)).save(images / f"{name}.png")
  out = tmp_path / "regions"
  argv = ["--method=superpixel", f"--images={images}", f"--out={out}", "--no_progress"]
  assert export_regions.main(argv) == 0
  # As a writer killed before its rename leaves them: "b" has no map, a temporary, and "a.png"'s
  # temporary of another name stays beside a finished map (not removed: "a" is not recomputed).
  (out / "train" / "b.png").unlink()
  for name in (".b.png.x1y2.tmp", ".b.png.zz.tmp", ".a.png.q.tmp"):
    (out / "train" / name).write_bytes(b"partial")
  capsys.readouterr()
  assert export_regions.main(argv) == 0
  assert "wrote 1 maps" in capsys.readouterr().out
  names = sorted(p.name for p in (out / "train").iterdir())
  assert names == [".a.png.q.tmp", "a.png", "b.png"], names
  assert regions.read_manifest(out)["counts"] == {"train": 2}


def test_draw_regions_sheet(tmp_path):
  import draw_regions  # tools/, on sys.path above.

  images = tmp_path / "images"
  images.mkdir()
  for name in ("a", "b"):
    Image.fromarray(np.full((12, 16, 3), 100, np.uint8)).save(images / f"{name}.png")
  out = tmp_path / "regions"
  assert export_regions.main(["--method=superpixel", f"--images={images}", f"--out={out}"]) == 0
  ids = np.full((12, 16), -1)
  ids[:, 8:] = 0
  row = draw_regions.overlay_row(np.full((12, 16, 3), 100, np.uint8), ids)
  assert row.shape == (12, 48, 3)
  np.testing.assert_array_equal(row[:, :24], 100)  # The image; no region left of column 8.
  assert (row[:, 24:32] != 100).any(axis=-1).all()  # Coloured where the region is.
  sheet = tmp_path / "sheet.png"
  assert (
      draw_regions.main([f"--regions={out}", f"--images={images}", "--num=2", f"--out={sheet}"])
      == 0
  )
  assert Image.open(sheet).size == (48, 24)


def test_unwritable_output_and_bad_flags(tmp_path, capsys):
  images = tmp_path / "images"
  images.mkdir()
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(images / "x.png")
  blocker = tmp_path / "file"
  blocker.write_text("a file where a directory should be")
  assert (
      export_regions.main(["--method=superpixel", f"--images={images}", f"--out={blocker}/r"]) == 2
  )
  assert "is not writable" in capsys.readouterr().err
  assert export_regions.main(["--method=superpixel", f"--out={tmp_path}/r"]) == 2
  assert "give an input" in capsys.readouterr().err
  assert export_regions.main(["--method=superpixel", f"--images={tmp_path}/none", "--out=r"]) == 2
  assert "does not exist" in capsys.readouterr().err
  assert export_regions.main(["--method=sam", f"--images={images}", f"--out={tmp_path}/r"]) == 2
  assert "needs --checkpoint" in capsys.readouterr().err


def test_tfds_input_keys_maps_by_the_id_feature(tmp_path):
  out = tmp_path / "regions"
  argv = ["--method=superpixel", "--tfds=procedural_rooms/tiny", f"--data_dir={tmp_path / 'tfds'}"]
  assert export_regions.main([*argv, f"--out={out}", "--limit=3", "--no_progress"]) == 0
  assert sorted(p.stem for p in (out / "train").glob("*.png")) == [
      f"train_{i:07d}" for i in range(3)
  ]
  manifest = regions.read_manifest(out)
  assert manifest["source"]["dataset"] == "procedural_rooms/tiny"
  assert manifest["image_size"] == [32, 64]


# --------------------------------------------------------------------------------------------
# SAM, with a tiny randomly initialised model built from segment_anything's own modules
# --------------------------------------------------------------------------------------------


_SAM_KNOBS = ["--points_per_side=4", "--pred_iou_thresh=0", "--stability_score_thresh=0"]


def _tiny_sam(*args, timeout=300):
  """``tests/tiny_sam.py ARGS`` in a subprocess (torchvision crashes a process that imported TF)."""
  cmd = [sys.executable, str(ROOT / "tests" / "tiny_sam.py"), *map(str, args)]
  return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
  path = tmp_path_factory.mktemp("sam") / "tiny_sam.pth"
  proc = _tiny_sam("--save", path)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return path


@needs_sam
@needs_mini
def test_sam_export_end_to_end(tmp_path, tiny_checkpoint):
  out = tmp_path / "regions"
  argv = [
      "--method=sam",
      f"--checkpoint={tiny_checkpoint}",
      "--model_type=vit_tiny",
      *_SAM_KNOBS,
      f"--data_dir={MINI}",
      f"--out={out}",
      "--no_progress",
  ]
  proc = _tiny_sam(*argv, "--limit=2")
  assert proc.returncode == 0, proc.stderr[-3000:]
  for path in sorted((out / "train").glob("*.png")):
    values = _check_map(path, (288, 384))
    assert values.max() >= 1  # Thresholds at 0: the random model's masks are kept.
  manifest = regions.read_manifest(out)
  params = manifest["parameters"]
  assert manifest["method"] == "sam" and params["model_type"] == "vit_tiny"
  assert params["checkpoint_sha256"] == hashlib.sha256(tiny_checkpoint.read_bytes()).hexdigest()
  assert params["points_per_side"] == 4 and "points_per_batch" not in params
  assert set(manifest["package_versions"]) >= {"segment-anything", "torch", "torchvision"}
  assert manifest["counts"] == {"train": 2} and manifest["seconds_per_image"] > 0

  # Resume: the two maps are skipped, the third is computed. points_per_batch is not a parameter.
  proc = _tiny_sam(*argv, "--limit=3", "--points_per_batch=2")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "wrote 1 maps" in proc.stdout and "2 existed" in proc.stdout
  # Changed generator parameters are refused.
  proc = _tiny_sam(*argv, "--limit=3", "--pred_iou_thresh=0.5")
  assert proc.returncode == 2 and "pred_iou_thresh: 0.0 vs 0.5" in proc.stderr


@needs_sam
def test_sam_checkpoint_errors(tmp_path, tiny_checkpoint):
  images = tmp_path / "images"
  images.mkdir()
  Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(images / "x.png")
  base = ["--method=sam", f"--images={images}", f"--out={tmp_path / 'r'}", "--model_type=vit_tiny"]
  proc = _tiny_sam(*base, f"--checkpoint={tmp_path / 'none.pth'}")
  assert proc.returncode == 2 and "does not exist" in proc.stderr
  # A checkpoint of another model: the tiny SAM loaded as its wider, 2-block sibling.
  proc = _tiny_sam(*base, f"--checkpoint={tiny_checkpoint}", "--model_type=vit_tiny_wide")
  assert proc.returncode == 2
  assert "does not match --model_type vit_tiny_wide" in proc.stderr
  assert "missing keys ['image_encoder.blocks.1." in proc.stderr
  assert "image_encoder.blocks.0.attn.qkv.bias (48,) vs (96,)" in proc.stderr
  garbage = tmp_path / "garbage.pth"
  garbage.write_bytes(b"\x00" * 64)
  proc = _tiny_sam(*base, f"--checkpoint={garbage}")
  assert proc.returncode == 2 and "cannot be read by torch.load" in proc.stderr
  assert not (tmp_path / "r" / "train").exists()  # No map was written by any of these.


def test_missing_sam_packages_name_the_extra(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "segment_anything", None)  # import → ImportError
  with pytest.raises(region_export.ExportError, match=r'pip install -e "\.\[sam\]"'):
    export_regions.load_sam("vit_b", tmp_path / "x.pth", "cpu")


@needs_sam
@needs_mini
def test_a_killed_sam_export_leaves_no_truncated_map_and_a_rerun_completes_it(
    tmp_path, tiny_checkpoint
):
  out = tmp_path / "regions"
  argv = [
      sys.executable,
      str(ROOT / "tests" / "tiny_sam.py"),
      "--method=sam",
      f"--checkpoint={tiny_checkpoint}",
      "--model_type=vit_tiny",
      *_SAM_KNOBS,
      f"--data_dir={MINI}",
      f"--out={out}",
      "--no_progress",
  ]
  proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
  deadline = time.monotonic() + 120
  while not list((out / "train").glob("*.png")) and time.monotonic() < deadline:
    assert proc.poll() is None, proc.communicate()
    time.sleep(0.02)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  done = sorted((out / "train").glob("*.png"))
  num = len(list((MINI / "train" / "image").glob("*.npy")))
  assert 1 <= len(done) < num
  for path in done:
    _check_map(path, (288, 384))  # Complete maps only.
  # What a writer killed mid-write leaves: a temporary, never a truncated map.
  (out / "train" / f".{num - 1}.png.x1y2.tmp").write_bytes(b"\x89PNG\r\n\x1a\n trunc")
  rerun = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert f"{len(done)} existed" in rerun.stdout
  assert len(list((out / "train").glob("*.png"))) == num
  assert not list((out / "train").glob(".*.tmp"))
  assert regions.read_manifest(out)["counts"] == {"train": num}


# --------------------------------------------------------------------------------------------
# Round trip: training reads the exported maps
# --------------------------------------------------------------------------------------------


@needs_mini
@pytest.mark.slow
def test_training_on_exported_maps(tmp_path):
  out = tmp_path / "regions"
  assert (
      export_regions.main(
          ["--method=superpixel", f"--data_dir={MINI}", f"--out={out}", "--no_progress"]
      )
      == 0
  )
  workdir = str(tmp_path / "run")
  proc = run_main(
      workdir,
      f"--config.dataset.data_dir={MINI}",
      f"--config.label_setting={MINI}/train_labelled_tasks.npy",
      "--config.delta_m_reference=full",
      "--config.num_train_steps=2",
      "--config.eval_every_steps=2",
      "--config.checkpoint_every_steps=2",
      f"--config.regions.dir={out}",
      "--config.regularizer.mapping.filters=(8,16)",
      *TINY,
      config="configs/nyud_rdc.py",
  )
  assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
  scalars = read_scalars(workdir)
  assert np.isfinite(scalars["train/loss/rdc"][2]) and scalars["train/rdc/valid_regions"][2] > 0
  assert sorted(os.listdir(out)) == [".manifest.lock", "manifest.json", "train"]  # Nothing added.
