"""Procedural rooms: renderer geometry, determinism, TFDS builder round trip, pipeline source."""

import numpy as np
import pytest

from mtjax.data import label_settings, pipeline, procedural, regions
from mtjax.data.builders import procedural_rooms
from mtjax.data.procedural_source import ProceduralRoomsSource

H, W = 48, 64
SEEDS = range(6)


@pytest.fixture(scope="module")
def frames():
  return [procedural.render_scene(s, H, W) for s in SEEDS]


def _rays(ex):
  """Camera-frame rays (z = 1) and world ray directions [H, W, 3] of a frame."""
  d = procedural.camera_rays(H, W)
  return d, d @ ex["cam_to_world"][:3, :3].T


def test_layout(frames):
  for ex in frames:
    assert ex["image"].shape == (H, W, 3) and ex["image"].dtype == np.uint8
    assert ex["semantic"].shape == (H, W) and ex["semantic"].dtype == np.int32
    assert ex["depth"].shape == (H, W, 1) and ex["depth"].dtype == np.float32
    assert ex["normal"].shape == (H, W, 3) and ex["normal"].dtype == np.float32
    assert ex["instance"].shape == (H, W) and ex["instance"].dtype == np.int32
    assert ex["semantic"].min() >= -1 and ex["semantic"].max() < len(procedural.CLASSES)
    np.testing.assert_allclose(ex["intrinsics"][0, 0], 518.8579 * W / 640)


def test_room_depth_matches_plane_hit_distance(frames):
  # Instances 0..5: floor y=0, ceiling y=Y, walls x=0, x=X, z=0, z=Z (world frame).
  planes = [(1, 0), (1, 1), (0, 0), (0, 1), (2, 0), (2, 1)]
  checked = 0
  for ex in frames:
    dcam, dworld = _rays(ex)
    origin, size = ex["cam_to_world"][:3, 3], ex["room_size"]
    length = ex["depth"][..., 0] * np.linalg.norm(dcam, axis=-1)  # z-depth -> ray length.
    unit = dworld / np.linalg.norm(dworld, axis=-1, keepdims=True)
    for inst, (axis, far) in enumerate(planes):
      mask = ex["instance"] == inst
      hit = (size[axis] * far - origin[axis]) / unit[..., axis]
      np.testing.assert_allclose(length[mask], hit[mask], rtol=1e-5, atol=1e-5)
      checked += mask.sum()
  assert checked > 0


def test_floor_points_and_constant_floor_normal(frames):
  seen = 0
  for ex in frames:
    dcam, _ = _rays(ex)
    floor = ex["semantic"] == procedural.FLOOR
    if not floor.any():
      continue
    seen += 1
    points = (ex["depth"] * dcam) @ ex["cam_to_world"][:3, :3].T + ex["cam_to_world"][:3, 3]
    np.testing.assert_allclose(points[floor][:, 1], 0.0, atol=1e-4)
    up_in_camera = ex["cam_to_world"][:3, :3].T @ np.array([0.0, 1.0, 0.0])
    np.testing.assert_allclose(
        ex["normal"][floor], np.broadcast_to(up_in_camera, (floor.sum(), 3)), atol=1e-5
    )
  assert seen >= 2


def test_normals_unit_and_facing_camera(frames):
  for ex in frames:
    dcam, _ = _rays(ex)
    valid = ex["depth"][..., 0] > 0
    np.testing.assert_allclose(np.linalg.norm(ex["normal"][valid], axis=-1), 1.0, atol=1e-5)
    assert ((ex["normal"] * dcam).sum(-1)[valid] < 0).all()
    assert (ex["normal"][~valid] == 0).all()
    assert ((ex["semantic"] == -1) == ~valid).all()


def test_semantic_and_instance_agree(frames):
  for ex in frames:
    assert ((ex["instance"] == -1) == (ex["semantic"] == -1)).all()
    for inst in np.unique(ex["instance"]):
      assert len(np.unique(ex["semantic"][ex["instance"] == inst])) == 1
  assert max(len(np.unique(ex["instance"])) for ex in frames) > 6  # Objects are visible.


def test_deterministic():
  a, b, c = (procedural.render_scene(s, 24, 32) for s in (3, 3, 4))
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a["image"], c["image"])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return tmp_path_factory.mktemp("tfds")


def test_builder_round_trip(data_dir):
  builder = procedural_rooms.ProceduralRooms(
      data_dir=str(data_dir), config="tiny", file_format="array_record"
  )
  builder.download_and_prepare()
  assert builder.info.splits["train"].num_examples == 8
  assert builder.info.splits["validation"].num_examples == 4
  for split in ("train", "test"):
    source = builder.as_data_source(split=split)
    for i in (0, len(source) - 1):
      ex = source[i]
      ref = procedural.render_scene(procedural_rooms.example_seed(split, i), 32, 64)
      for key in ("image", "semantic", "depth", "normal", "instance"):
        np.testing.assert_array_equal(ex[key], ref[key], err_msg=key)
      assert ex["id"] == f"{split}_{i:07d}".encode()


def test_source_feeds_train_pipeline(data_dir):
  source = ProceduralRoomsSource("train", data_dir=data_dir, config_name="tiny")
  assert (source.num_examples, source.image_shape) == (8, (32, 64))
  ex = source.load(2)
  assert ex["image"].dtype == np.float32 and ex["image"].max() <= 1.0
  mask = label_settings.resolve_label_mask(
      "onelabel",
      num_examples=source.num_examples,
      dataset_tasks=source.tasks,
      tasks=source.tasks,
      seed=0,
  )
  ds = pipeline.train_dataset(
      source, label_mask=mask, per_process_batch_size=2, seed=0, scales=(1.0,), flip=False
  )
  batch = next(ds.as_numpy_iterator())
  assert batch["image"].shape == (2, 32, 64, 3)
  assert batch["semseg"].shape == (2, 32, 64) and batch["depth"].shape == (2, 32, 64, 1)
  i = int(batch["index"][0])
  np.testing.assert_array_equal(batch["semseg"][0], source.load(i)["semseg"])


def test_instance_regions_in_train_batches(data_dir):
  """config.regions.source="instance": the rooms' instance ids, relabelled by area, scale-cropped
  and flipped with the labels; the stable id is the TFDS id."""
  source = ProceduralRoomsSource("train", data_dir=data_dir, config_name="tiny")
  assert source.example_id(3) == "train_0000003"
  spec = regions.RegionSpec(source="instance", max_regions=4, min_pixels=1)
  ds = pipeline.train_dataset(
      source, label_mask=np.ones((8, 3)), per_process_batch_size=2, seed=0, flip=True, regions=spec
  )
  for batch in ds.take(3).as_numpy_iterator():
    assert batch["regions"].shape == (2, 32, 64) and batch["regions"].max() <= 3
    for b in range(2):
      ids = batch["regions"][b]
      # Each kept region lies inside one semantic class (an instance is one object).
      for r in np.unique(ids[ids >= 0]):
        assert len(np.unique(batch["semseg"][b][ids == r])) == 1
  # Without augmentation the map is exactly relabel_by_area of the stored instance ids.
  plain = pipeline.train_dataset(
      source,
      label_mask=np.ones((8, 3)),
      per_process_batch_size=2,
      seed=0,
      scales=(1.0,),
      flip=False,
      regions=spec,
  )
  batch = next(plain.as_numpy_iterator())
  stored = source.load(int(batch["index"][0]))["instance"]
  np.testing.assert_array_equal(batch["regions"][0], regions.relabel_by_area(stored, 4))
