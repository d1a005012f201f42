"""Procedural rooms: renderer geometry, edges, determinism, TFDS builder round trip and
versions, pipeline source."""

import hashlib

import numpy as np
import pytest
import tensorflow_datasets as tfds

from mtjax.data import label_settings, pipeline, procedural, regions
from mtjax.data import procedural_source
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
    assert ex["edge"].shape == (H, W, 1) and ex["edge"].dtype == np.uint8
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


def _reference_edges(instance, depth, depth_steps=True):
  """The documented edge rule, computed independently: per pixel, from its four neighbours
  (padded with invalid pixels); a depth step is an edge where far > 1.25 near."""
  h, w = instance.shape
  ids = np.pad(instance, 1, constant_values=-1)
  z = np.pad(depth[..., 0].astype(np.float64), 1)
  valid = (ids >= 0) & (z > 0)
  centre = (slice(1, h + 1), slice(1, w + 1))
  edge = np.zeros((h, w), bool)
  for dv, du in ((-1, 0), (1, 0), (0, -1), (0, 1)):
    nb = (slice(1 + dv, h + 1 + dv), slice(1 + du, w + 1 + du))
    near, far = np.minimum(z[centre], z[nb]), np.maximum(z[centre], z[nb])
    edge |= valid[nb] & ((ids[centre] != ids[nb]) | (depth_steps & (far > 1.25 * near)))
  return np.where(valid[centre], edge, 255).astype(np.uint8)[..., None]


def test_edges_lie_on_instance_or_depth_boundaries_and_nowhere_else():
  depth_only = 0
  for seed in range(12):
    ex = procedural.render_scene(seed, 24, 32)
    np.testing.assert_array_equal(
        ex["edge"], _reference_edges(ex["instance"], ex["depth"]), err_msg=f"seed {seed}"
    )
    np.testing.assert_array_equal(ex["edge"][..., 0] == 255, ex["instance"] == -1)
    instance_edges = _reference_edges(ex["instance"], ex["depth"], depth_steps=False)
    assert (instance_edges == 1).any()
    assert not ((instance_edges == 1) & (ex["edge"] == 0)).any()
    depth_only += ((ex["edge"] == 1) & (instance_edges == 0)).sum()
  assert depth_only > 0  # Occlusions inside one instance (e.g. chair legs) are edges too.


def test_edge_rule_on_a_hand_made_frame():
  instance = np.array([[0, 0, 0, 1], [0, -1, 0, 1], [0, 0, 0, 0]])
  depth = np.array([[1, 1.25, 1, 1], [1, 0, 2, 1], [1, 1, 1, 1]], np.float32)[..., None]
  # (0, 1) steps by exactly 25 %: no edge. (1, 0) has an invalid neighbour only: no edge.
  # (1, 2) steps by 100 % to (0, 2) and (2, 2); column 3 borders instance 1.
  expected = np.array([[0, 0, 1, 1], [0, 255, 1, 1], [0, 0, 1, 1]], np.uint8)[..., None]
  np.testing.assert_array_equal(procedural.edge_map(instance, depth), expected)
  depth[0, 1] = np.nextafter(np.float32(1.25), np.float32(2))  # Just over 25 %.
  expected[0, :3] = 1
  np.testing.assert_array_equal(procedural.edge_map(instance, depth), expected)
  with pytest.raises(ValueError, match="depth"):
    procedural.edge_map(instance, depth[..., 0])


def test_edges_commute_with_flips_and_transposes():
  ex = procedural.render_scene(5, 24, 32)
  for op in (lambda a: a[:, ::-1], lambda a: a[::-1], lambda a: a.swapaxes(0, 1)):
    np.testing.assert_array_equal(
        procedural.edge_map(op(ex["instance"]), op(ex["depth"])), op(ex["edge"])
    )


# sha256 of image, semantic, depth, normal and instance as rendered before edges existed
# (builder 1.0.0), by `_digest`. A change here changes the existing examples: that needs a new
# builder version. (Bit-identity is promised on one platform: NumPy / CPU changes may differ.)
_V1_DIGESTS = {
    (0, 24, 32): "5eb3d2d2cb2d02213f559274378e4e048a7cf156e974b73882fc3dd6dca2b8ea",
    (1, 24, 32): "0417d51271c490813baf46248492260e5d19da17cee5755644bcb3d98a67505a",
    (3, 24, 32): "4681789dd813ecdd9bc22c93202cac0659499bfa5fbc19ed38462350509a7a26",
    (10_000_000, 32, 64): "89ea75fa4d5e8d9a2b7af6583e72aab1df9e81fd2815f7aaee87820c5e2219cd",
    (20_000_003, 32, 64): "f44459ab848821e9f0ce397751c7e9985798aaab30858afca7f7e46563ab858d",
}


def _digest(ex):
  h = hashlib.sha256()
  for key in ("image", "semantic", "depth", "normal", "instance"):
    a = np.ascontiguousarray(ex[key])
    h.update(key.encode() + str(a.dtype).encode() + str(a.shape).encode() + a.tobytes())
  return h.hexdigest()


def test_fields_before_edges_are_unchanged():
  for (seed, height, width), digest in _V1_DIGESTS.items():
    ex = procedural.render_scene(seed, height, width)
    assert _digest(ex) == digest, (seed, height, width)


def test_deterministic():
  a, b, c = (procedural.render_scene(s, 24, 32) for s in (3, 3, 4))
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])
  assert not np.array_equal(a["image"], c["image"])


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """A TFDS directory where procedural_rooms/tiny 1.0.0 (no edge) was prepared, as by the code
  before edges (TFDS generates only a builder's latest version: the builder pretends that it is
  1.0.0)."""
  path = tmp_path_factory.mktemp("tfds")
  with pytest.MonkeyPatch.context() as patch:
    patch.setattr(procedural_rooms.ProceduralRooms, "VERSION", tfds.core.Version("1.0.0"))
    patch.setattr(procedural_rooms.ProceduralRooms, "SUPPORTED_VERSIONS", [])
    procedural_rooms.ProceduralRooms(
        data_dir=str(path), config="tiny", file_format="array_record"
    ).download_and_prepare()
  return path


def test_builder_round_trip(data_dir):
  builder = procedural_rooms.ProceduralRooms(
      data_dir=str(data_dir), config="tiny", file_format="array_record"
  )
  assert builder.version == "1.1.0"  # The latest, generated beside the 1.0.0 of data_dir.
  builder.download_and_prepare()
  assert builder.info.splits["train"].num_examples == 8
  assert builder.info.splits["validation"].num_examples == 4
  edge = builder.info.features["edge"]
  assert edge.shape == (32, 64, 1) and edge.dtype == np.uint8
  for split in ("train", "test"):
    source = builder.as_data_source(split=split)
    for i in (0, len(source) - 1):
      ex = source[i]
      ref = procedural.render_scene(procedural_rooms.example_seed(split, i), 32, 64)
      for key in ("image", "semantic", "depth", "normal", "instance", "edge"):
        np.testing.assert_array_equal(ex[key], ref[key], err_msg=key)
      np.testing.assert_array_equal(ex["edge"], procedural.edge_map(ex["instance"], ex["depth"]))
      assert ex["id"] == f"{split}_{i:07d}".encode()


def test_version_1_0_0_still_reads_and_the_source_uses_1_1_0(data_dir):
  old = procedural_rooms.ProceduralRooms(
      data_dir=str(data_dir), config="tiny", version="1.0.0", file_format="array_record"
  )
  assert old.is_prepared() and "edge" not in old.info.features
  old_records = old.as_data_source(split="validation")
  source = ProceduralRoomsSource("validation", data_dir=data_dir, config_name="tiny")
  assert (data_dir / "procedural_rooms" / "tiny" / "1.1.0").is_dir()
  for i in range(source.num_examples):
    ex, record = source.load(i), old_records[i]
    for key, old_key in (("semseg", "semantic"), ("depth", "depth"), ("normal", "normal")):
      np.testing.assert_array_equal(ex[key], record[old_key], err_msg=key)
    np.testing.assert_array_equal(ex["instance"], record["instance"])
    np.testing.assert_array_equal(ex["image"], np.asarray(record["image"], np.float32) / 255)
    assert ex["edge"].dtype == np.float32 and ex["edge"].shape == (32, 64, 1)
    np.testing.assert_array_equal(
        ex["edge"], procedural.edge_map(record["instance"], record["depth"]).astype(np.float32)
    )


def test_source_tasks():
  # Runs without edge see the tasks of 1.0.0, so their label masks and batches are unchanged.
  assert procedural_source.TASKS == ("semseg", "depth", "normal", "edge")
  assert procedural_source.TASKS_WITHOUT_EDGE == ("semseg", "depth", "normal")
  with pytest.raises(ValueError, match="unknown: \\['edges'\\]"):
    ProceduralRoomsSource("train", data_dir=None, tasks=("semseg", "edges"))


def test_source_feeds_train_pipeline(data_dir):
  source = ProceduralRoomsSource("train", data_dir=data_dir, config_name="tiny")
  assert (source.num_examples, source.image_shape) == (8, (32, 64))
  assert source.tasks == ("semseg", "depth", "normal")
  with_edge = ProceduralRoomsSource(
      "train", data_dir=data_dir, config_name="tiny", tasks=("semseg", "edge")
  )
  assert with_edge.tasks == ("semseg", "depth", "normal", "edge")
  ex = source.load(2)
  assert ex["image"].dtype == np.float32 and ex["image"].max() <= 1.0
  assert set(np.unique(ex["edge"])) <= {0.0, 1.0, 255.0} and (ex["edge"] == 1).any()
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
