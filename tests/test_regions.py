"""Region maps: the file format, relabelling, the region sources and their path through the pipeline."""

import json

import numpy as np
import pytest
from PIL import Image

from mtjax.data import nyuv2, pipeline, regions
from tests.data_fixtures import SHARED_DATA, make_nyuv2_layout

# --------------------------------------------------------------------------------------------
# Relabelling and the sources computed in the pipeline
# --------------------------------------------------------------------------------------------


def test_relabel_orders_by_area_and_breaks_ties_by_id():
  ids = np.full((4, 6), -1)
  ids[0, :] = 7  # 6 pixels
  ids[1, :3] = 3  # 3 pixels
  ids[1, 3:] = 9  # 3 pixels: ties with 3, which has the smaller id.
  ids[2, :5] = 2  # 5 pixels
  out = regions.relabel_by_area(ids, max_regions=10)
  assert out.dtype == np.int32
  expected = np.full((4, 6), -1)
  expected[0, :], expected[2, :5], expected[1, :3], expected[1, 3:] = 0, 1, 2, 3
  np.testing.assert_array_equal(out, expected)


def test_relabel_keeps_the_largest_r_and_drops_small_regions():
  ids = np.repeat(np.arange(8)[None, :], 8, axis=0)  # 8 columns = 8 regions of 8 pixels...
  ids[:5, 7] = 6  # ... except 6 (13 pixels) and 7 (3 pixels).
  out = regions.relabel_by_area(ids, max_regions=3, min_pixels=4)
  assert set(np.unique(out)) == {-1, 0, 1, 2}
  assert (out[ids == 6] == 0).all()  # The largest.
  assert (out[ids == 0] == 1).all() and (out[ids == 1] == 2).all()  # Ties: smaller ids first.
  assert (out[ids >= 2] != 1).all() and (out[ids == 7] == -1).all()
  # min_pixels above every area: nothing is kept.
  np.testing.assert_array_equal(regions.relabel_by_area(ids, 3, min_pixels=100), -1)


def test_relabel_of_a_map_without_regions_and_negative_ids():
  np.testing.assert_array_equal(regions.relabel_by_area(np.full((3, 3), -1), 4), -1)
  ids = np.array([[-5, 4], [4, -1]])
  np.testing.assert_array_equal(regions.relabel_by_area(ids, 4), [[-1, 0], [0, -1]])


def test_relabel_counts_areas_at_the_loss_stride():
  """At stride 2 the loss samples pixels (1, 1), (1, 3), (3, 1), (3, 3): region 5 (a whole
  row 0, 4 pixels) is never sampled and is dropped; region 1 (sampled twice) beats region 2
  (sampled once) although region 2 is larger at full resolution."""
  ids = np.array([[5, 5, 5, 5], [1, 1, 2, 1], [2, 2, 2, 2], [2, 1, 2, 2]])
  out = regions.relabel_by_area(ids, max_regions=4, loss_stride=2)
  assert (out[ids == 5] == -1).all()
  assert (out[ids == 1] == 0).all() and (out[ids == 2] == 1).all()
  full = regions.relabel_by_area(ids, max_regions=4)
  assert (full[ids == 2] == 0).all()


def test_patch_and_semantic_regions():
  patch = regions.patch_regions(5, 7, 3)
  assert patch.shape == (5, 7) and patch.dtype == np.int32
  np.testing.assert_array_equal(patch[0], [0, 0, 0, 1, 1, 1, 2])
  np.testing.assert_array_equal(patch[4], [3, 3, 3, 4, 4, 4, 5])
  semseg = np.array([[0, 0, 3, 0], [-1, -1, 3, 0], [0, 0, 3, 0]])
  np.testing.assert_array_equal(regions.semantic_regions(semseg), semseg)
  split = regions.semantic_regions(semseg, split_components=True)
  # Class 0 falls in three 8-connected components: top-left and bottom-left (parted by the
  # ignored pixels) and the right column (parted by class 3).
  assert len(np.unique(split[semseg == 0])) == 3 and len(np.unique(split[semseg == 3])) == 1
  assert (split[semseg == -1] == -1).all() and len(np.unique(split[semseg >= 0])) == 4
  assert split[0, 0] == split[0, 1] != split[2, 0] == split[2, 1]


# --------------------------------------------------------------------------------------------
# The format
# --------------------------------------------------------------------------------------------


def _manifest(**extra):
  return {
      "method": "semantic_gt_copy",
      "parameters": {"offset": 1},
      "image_size": [16, 24],
      **extra,
  }


def test_map_round_trip_and_manifest(tmp_path):
  ids = np.array([[0, 1, 65535], [300, 2, 7]], np.uint16)
  path = regions.write_map(tmp_path, "train", "3", ids)
  assert path == tmp_path / "train" / "3.png"
  np.testing.assert_array_equal(regions.read_map(path, "3", (2, 3)), ids.astype(np.int32) - 1)
  assert [p.name for p in (tmp_path / "train").iterdir()] == ["3.png"]  # No temporary left.
  regions.write_manifest(tmp_path, _manifest())
  assert regions.read_manifest(tmp_path)["format"] == regions.FORMAT
  regions.write_manifest(tmp_path, _manifest(counts={"train": 1}))  # Same method and parameters.
  with pytest.raises(ValueError, match="holds maps of parameters"):
    regions.write_manifest(tmp_path, {**_manifest(), "parameters": {"offset": 2}})
  regions.write_manifest(tmp_path, {**_manifest(), "parameters": {"offset": 2}}, overwrite=True)
  with pytest.raises(ValueError, match=r"values must be in \[0, 65535\]"):
    regions.write_map(tmp_path, "train", "4", np.array([[-1]]))


def test_reader_refuses_unknown_formats(tmp_path):
  with pytest.raises(FileNotFoundError, match="has no manifest.json"):
    regions.read_manifest(tmp_path)
  (tmp_path / "manifest.json").write_text(json.dumps({"format": "mtjax-regions/9"}))
  with pytest.raises(ValueError, match="format .mtjax-regions/9.; expected a region manifest"):
    regions.read_manifest(tmp_path)
  (tmp_path / "manifest.json").write_text("{not json")
  with pytest.raises(ValueError, match="is not valid JSON"):
    regions.read_manifest(tmp_path)


# --------------------------------------------------------------------------------------------
# Through the pipeline
# --------------------------------------------------------------------------------------------


def _take(ds, n):
  return list(ds.take(n).as_numpy_iterator())


def _export_semseg_as_regions(source, region_dir, split):
  """Region maps equal to the semseg labels (file value = class + 1, ignore -> 0)."""
  regions.write_manifest(
      region_dir, {**_manifest(), "image_size": list(source.image_shape), "method": "semseg"}
  )
  for i in range(source.num_examples):
    semseg = source.load(i)["semseg"]
    regions.write_map(region_dir, split, source.example_id(i), semseg + 1)


def _assert_same_partition(regions_map, semseg):
  """Each region is exactly one class's pixels and vice versa; no region where no label."""
  np.testing.assert_array_equal(regions_map < 0, semseg < 0)
  pairs = np.unique(np.stack([regions_map[semseg >= 0], semseg[semseg >= 0]]), axis=1)
  assert len(set(pairs[0])) == len(set(pairs[1])) == pairs.shape[1]


@pytest.fixture
def root(tmp_path):
  return make_nyuv2_layout(tmp_path / "nyuv2", splits={"train": 3}, hw=(16, 24))


def test_region_files_stay_aligned_through_scale_crop_and_flip(root, tmp_path):
  """A region map equal to the semseg map is still the same partition after RandomScaleCrop and
  the flip (both nearest), in every batch."""
  train = nyuv2.NYUv2Split(root, "train")
  region_dir = tmp_path / "regions"
  _export_semseg_as_regions(train, region_dir, "train")
  before = sorted((p.name, p.stat().st_mtime_ns) for p in region_dir.rglob("*"))
  spec = regions.RegionSpec(source="files", dir=str(region_dir), max_regions=20, min_pixels=1)
  ds = pipeline.train_dataset(
      train, label_mask=np.ones((3, 3)), per_process_batch_size=3, seed=1, flip=True, regions=spec
  )
  batches = _take(ds, 4)
  for batch in batches:
    assert batch["regions"].dtype == np.int32 and batch["regions"].shape == (3, 16, 24)
    for b in range(3):
      _assert_same_partition(batch["regions"][b], batch["semseg"][b])
  # The stream did scale-crop: some batch differs from the stored labels.
  assert any(
      not np.array_equal(batch["semseg"][b], train.load(batch["index"][b])["semseg"])
      for batch in batches
      for b in range(3)
  )
  assert sorted((p.name, p.stat().st_mtime_ns) for p in region_dir.rglob("*")) == before
  (eval_batch,) = _take(pipeline.eval_dataset(train, per_process_batch_size=3), 1)
  assert "regions" not in eval_batch


@pytest.mark.parametrize("source", ["patch", "semantic_gt"])
def test_computed_region_sources(root, source):
  train = nyuv2.NYUv2Split(root, "train")
  spec = regions.RegionSpec(source=source, patch_size=8, max_regions=4, min_pixels=1)
  (batch,) = _take(
      pipeline.train_dataset(
          train, label_mask=np.ones((3, 3)), per_process_batch_size=3, seed=0, regions=spec
      ),
      1,
  )
  ids = batch["regions"]
  assert ids.shape == (3, 16, 24) and ids.min() >= -1 and ids.max() == 3
  if source == "patch":  # 2 x 3 cells of 64 pixels: the 4 kept are the first 4 (ties by id).
    np.testing.assert_array_equal(
        ids[0], np.where(regions.patch_regions(16, 24, 8) < 4, regions.patch_regions(16, 24, 8), -1)
    )
  else:
    for b in range(3):
      kept = ids[b] >= 0
      pairs = np.unique(np.stack([ids[b][kept], batch["semseg"][b][kept]]), axis=1)
      assert pairs.shape[1] == len(set(pairs[0])) == len(set(pairs[1]))


def _write_png(path, array):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(array).save(path)


@pytest.mark.parametrize(
    "corrupt, error, match",
    [
        (lambda p: p.unlink(), FileNotFoundError, "is missing"),
        (lambda p: _write_png(p, np.ones((16, 23), np.uint16)), ValueError, "is 16x23; expected"),
        (lambda p: _write_png(p, np.ones((16, 24), np.uint8)), ValueError, "8-bit grayscale PNG"),
        (lambda p: _write_png(p, np.ones((16, 24, 3), np.uint8)), ValueError, "8-bit RGB PNG"),
        (lambda p: p.write_bytes(b"not a png at all, just bytes"), ValueError, "is not a PNG"),
    ],
)
def test_bad_region_maps_fail_before_training_naming_id_path_and_layout(
    root, tmp_path, corrupt, error, match
):
  train = nyuv2.NYUv2Split(root, "train")
  region_dir = tmp_path / "regions"
  _export_semseg_as_regions(train, region_dir, "train")
  bad = region_dir / "train" / "1.png"
  corrupt(bad)
  spec = regions.RegionSpec(source="files", dir=str(region_dir))
  with pytest.raises(error, match=match) as info:
    pipeline.train_dataset(
        train, label_mask=np.ones((3, 3)), per_process_batch_size=1, seed=0, regions=spec
    )
  message = str(info.value)
  assert "example '1'" in message and str(bad) in message and "16-bit PNG" in message


def test_region_source_errors(root, tmp_path):
  train = nyuv2.NYUv2Split(root, "train")
  kwargs = dict(label_mask=np.ones((3, 3)), per_process_batch_size=1, seed=0)
  with pytest.raises(ValueError, match="needs a dataset with instance ids"):
    pipeline.train_dataset(train, regions=regions.RegionSpec(source="instance"), **kwargs)
  with pytest.raises(ValueError, match="needs config.regions.dir"):
    regions.RegionSpec(source="files")
  with pytest.raises(ValueError, match="config.regions.source must be one of"):
    regions.RegionSpec(source="sam")
  region_dir = tmp_path / "regions"
  _export_semseg_as_regions(train, region_dir, "train")
  manifest = json.loads((region_dir / "manifest.json").read_text())
  (region_dir / "manifest.json").write_text(json.dumps({**manifest, "image_size": [288, 384]}))
  with pytest.raises(ValueError, match=r"image_size \[288, 384\]; the train images are \[16, 24\]"):
    pipeline.train_dataset(
        train, regions=regions.RegionSpec(source="files", dir=str(region_dir)), **kwargs
    )


def test_real_frames_with_region_files(tmp_path):
  data_dir = SHARED_DATA / "nyuv2_mini"
  if not data_dir.is_dir():
    pytest.skip(f"real NYUv2 frames not found at {data_dir} (../shared/data is absent)")
  train = nyuv2.NYUv2Split(data_dir, "train")
  region_dir = tmp_path / "regions"
  _export_semseg_as_regions(train, region_dir, "train")
  spec = regions.RegionSpec(source="files", dir=str(region_dir), max_regions=32, min_pixels=1)
  n = train.num_examples
  (batch,) = _take(
      pipeline.train_dataset(
          train, label_mask=np.ones((n, 3)), per_process_batch_size=2, seed=0, regions=spec
      ),
      1,
  )
  assert batch["regions"].shape == (2, 288, 384)
  for b in range(2):
    _assert_same_partition(batch["regions"][b], batch["semseg"][b])
