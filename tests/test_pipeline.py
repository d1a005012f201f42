"""tf.data pipelines: determinism, exact resume, multi-host sharding, eval padding, real frames."""

import itertools

import numpy as np
import pytest

from mtjax.data import label_settings, nyuv2, pipeline
from tests.data_fixtures import SHARED_DATA, make_nyuv2_layout

KEYS = ("image", "semseg", "depth", "normal", "label_mask", "index", "valid")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
  return make_nyuv2_layout(tmp_path_factory.mktemp("nyuv2"))


@pytest.fixture(scope="module")
def train(root):
  return nyuv2.NYUv2Split(root, "train")


@pytest.fixture(scope="module")
def mask(train):
  return label_settings.resolve_label_mask(
      "onelabel",
      num_examples=train.num_examples,
      dataset_tasks=nyuv2.NYUV2_TASKS,
      tasks=nyuv2.NYUV2_TASKS,
      seed=0,
  )


def _take(dataset, steps):
  return list(itertools.islice(dataset.as_numpy_iterator(), steps))


def _train(train, mask, **kw):
  kw = {"per_process_batch_size": 2, "seed": 7, **kw}
  return pipeline.train_dataset(train, label_mask=mask, **kw)


def _assert_batches_equal(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert set(x) == set(KEYS)
    for key in KEYS:
      np.testing.assert_array_equal(x[key], y[key], err_msg=key)


def test_train_batch_layout(train, mask):
  (batch,) = _take(_train(train, mask), 1)
  expected = {
      "image": ((2, 16, 24, 3), np.float32),
      "semseg": ((2, 16, 24), np.int32),
      "depth": ((2, 16, 24, 1), np.float32),
      "normal": ((2, 16, 24, 3), np.float32),
      "label_mask": ((2, 3), np.float32),
      "index": ((2,), np.int32),
      "valid": ((2,), np.float32),
  }
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == expected
  np.testing.assert_array_equal(batch["label_mask"], mask[batch["index"]])
  np.testing.assert_array_equal(batch["valid"], 1)


def test_epochs_are_seeded_permutations(train, mask):
  stream = np.concatenate(
      [b["index"] for b in _take(_train(train, mask, per_process_batch_size=1), 15)]
  )
  for epoch in stream.reshape(3, 5):
    assert sorted(epoch) == list(range(5))
  assert len({tuple(e) for e in stream.reshape(3, 5)}) > 1
  other = np.concatenate(
      [b["index"] for b in _take(_train(train, mask, per_process_batch_size=1, seed=8), 15)]
  )
  assert not np.array_equal(stream, other)


def test_unaugmented_batches_are_the_files(train, mask):
  for batch in _take(_train(train, mask, scales=(1.0,), flip=False), 3):
    for b, i in enumerate(batch["index"]):
      for key, value in train.load(i).items():
        np.testing.assert_array_equal(batch[key][b], value)


def test_deterministic_and_exact_resume(train, mask):
  # 5 examples, batch 2: batches straddle epoch boundaries.
  fresh = _take(_train(train, mask), 14)
  _assert_batches_equal(fresh, _take(_train(train, mask), 14))
  for start in (1, 2, 5, 12):
    _assert_batches_equal(_take(_train(train, mask, start_step=start), 2), fresh[start : start + 2])
  # Augmentation depends on (seed, epoch, index): an example looks different in other epochs.
  images = {}
  for batch in fresh:
    for i, image in zip(batch["index"], batch["image"]):
      images.setdefault(i, set()).add(image.tobytes())
  assert max(len(v) for v in images.values()) > 1


def test_resume_far_ahead_is_cheap(train, mask):
  # Jumping to step 10**9 (4e8 epochs) must not replay the stream: at most one epoch is skipped.
  (batch,) = _take(_train(train, mask, start_step=10**9), 1)
  assert batch["index"].shape == (2,)


def test_hosts_partition_the_global_batch(train, mask):
  single = _take(_train(train, mask, per_process_batch_size=4), 6)
  hosts = [
      _take(_train(train, mask, per_process_batch_size=2, process_index=p, process_count=2), 6)
      for p in (0, 1)
  ]
  resumed = _take(
      _train(train, mask, per_process_batch_size=2, process_index=1, process_count=2, start_step=3),
      3,
  )
  _assert_batches_equal(resumed, hosts[1][3:])
  for step, batch in enumerate(single):
    host_indices = [h[step]["index"] for h in hosts]
    if len(set(batch["index"])) == 4:  # (a global batch may hold an example twice across epochs)
      assert not set(host_indices[0]) & set(host_indices[1])
    np.testing.assert_array_equal(np.sort(np.concatenate(host_indices)), np.sort(batch["index"]))
    # Same stream positions get the same augmented pixels whatever the host count.
    merged = np.stack([hosts[p][step]["image"][b] for b in range(2) for p in range(2)])
    np.testing.assert_array_equal(merged, batch["image"])


def test_train_errors(train, mask):
  with pytest.raises(ValueError, match=r"shape \(4, 3\); expected \[5, T\]"):
    _train(train, mask[:4])
  with pytest.raises(ValueError, match="process_index"):
    _train(train, mask, process_index=2, process_count=2)
  with pytest.raises(ValueError, match="per_process_batch_size"):
    _train(train, mask, per_process_batch_size=0)
  with pytest.raises(ValueError, match="start_step"):
    _train(train, mask, start_step=-1)
  with pytest.raises(ValueError, match="scales"):
    _train(train, mask, scales=(0.5, 1.0))


@pytest.mark.parametrize("batch_size, process_count", [(2, 1), (1, 2), (2, 2), (4, 1)])
def test_eval_sees_every_example_once(root, batch_size, process_count):
  val = nyuv2.NYUv2Split(root, "val")  # 3 examples
  hosts = [
      _take(
          pipeline.eval_dataset(
              val,
              per_process_batch_size=batch_size,
              process_index=p,
              process_count=process_count,
              tasks=("depth",),
          ),
          100,
      )
      for p in range(process_count)
  ]
  assert len({len(h) for h in hosts}) == 1
  batches = [b for h in hosts for b in h]
  index = np.concatenate([b["index"] for b in batches])
  assert sorted(index[index >= 0]) == [0, 1, 2]
  assert len(index) == -(-3 // (batch_size * process_count)) * batch_size * process_count
  for batch in batches:
    assert batch["label_mask"].shape == (batch_size, 1) and (batch["label_mask"] == 1).all()
    for b, i in enumerate(batch["index"]):
      assert batch["valid"][b] == (i >= 0)
      reference = val.load(i) if i >= 0 else {"image": 0, "semseg": -1, "depth": 0, "normal": 0}
      for key, value in reference.items():
        np.testing.assert_array_equal(batch[key][b], np.broadcast_to(value, batch[key][b].shape))


def test_eval_errors(root):
  val = nyuv2.NYUv2Split(root, "val")
  with pytest.raises(ValueError, match="subset of the source tasks"):
    pipeline.eval_dataset(val, per_process_batch_size=1, tasks=("edge",))


def test_real_frames_with_published_partial_labels():
  data_dir = SHARED_DATA / "nyuv2_mini"
  if not data_dir.is_dir():
    pytest.skip(f"real NYUv2 frames not found at {data_dir} (../shared/data is absent)")
  train = nyuv2.NYUv2Split(data_dir, "train")
  mask = label_settings.resolve_label_mask(
      data_dir / "train_labelled_tasks.npy",
      num_examples=train.num_examples,
      dataset_tasks=nyuv2.NYUV2_TASKS,
      tasks=("semseg", "depth"),
      seed=0,
  )
  (batch,) = _take(
      pipeline.train_dataset(train, label_mask=mask, per_process_batch_size=2, seed=0), 1
  )
  assert batch["image"].shape == (2, 288, 384, 3)
  np.testing.assert_array_equal(batch["label_mask"], mask[batch["index"]])
  for b in range(2):
    # An unlabelled task has no valid ground truth after augmentation either.
    assert (batch["semseg"][b] >= 0).any() == bool(batch["label_mask"][b, 0])
    assert (batch["depth"][b] > 0).any() == bool(batch["label_mask"][b, 1])
    normal = batch["normal"][b]
    valid = (normal != 0).any(-1)
    np.testing.assert_allclose(np.linalg.norm(normal[valid], axis=-1), 1.0, atol=1e-5)


@pytest.mark.parametrize("second_view", ["independent", "of_first"])
def test_second_view_of_the_first_view_compounds_the_zoom(tmp_path, second_view):
  """MTPSL's and RDC's released loaders crop the first view's crop again: with depth 1 m
  everywhere, view 1 holds 1 / s1 and view 2 1 / (s1 s2), so view 1 / view 2 = s2 >= 1; an
  independent second view holds 1 / s2, and the ratio s2 / s1 is below 1 for some examples."""
  root = make_nyuv2_layout(tmp_path, splits={"train": 24}, hw=(16, 24))
  for i in range(24):
    np.save(root / "train" / "depth" / f"{i}.npy", np.ones((16, 24, 1), np.float32))
  source = nyuv2.NYUv2Split(root, "train")
  mask = label_settings.resolve_label_mask(
      "full", num_examples=24, dataset_tasks=source.tasks, tasks=source.tasks, seed=0
  )
  ds = pipeline.train_dataset(
      source, label_mask=mask, per_process_batch_size=24, seed=1, views=2, second_view=second_view
  )
  batch = next(ds.as_numpy_iterator())
  d1, d2 = batch["depth"][:, 0, 0, 0], batch["view2/depth"][:, 0, 0, 0]
  ratio = d1 / d2
  scales = np.array([1.0, 1.2, 1.5])
  if second_view == "of_first":
    assert np.all(np.min(np.abs(ratio[:, None] - scales), 1) < 1e-5), ratio
    assert np.min(d2) < 1 / 1.5 - 1e-3  # A compound zoom beyond the largest single one.
  else:
    assert np.min(ratio) < 1 - 1e-3
  with pytest.raises(ValueError, match="second_view"):
    pipeline.train_dataset(
        source, label_mask=mask, per_process_batch_size=4, seed=1, views=2, second_view="crop"
    )
