"""NYUv2Split: layout validation errors and loading conventions."""

import shutil

import numpy as np
import pytest

from mtjax.data import nyuv2
from tests.data_fixtures import SHARED_DATA, make_nyuv2_layout


@pytest.fixture
def root(tmp_path):
  return make_nyuv2_layout(tmp_path / "nyuv2")


def test_load_conventions(root):
  split = nyuv2.NYUv2Split(root, "train")
  assert (split.num_examples, split.image_shape, split.tasks) == (5, (16, 24), nyuv2.NYUV2_TASKS)
  example = split.load(3)
  raw_label = np.load(root / "train" / "label" / "3.npy")
  assert example["image"].dtype == np.float32 and example["image"].shape == (16, 24, 3)
  assert example["semseg"].dtype == np.int32 and example["semseg"].shape == (16, 24)
  np.testing.assert_array_equal(example["semseg"], raw_label)
  assert (example["semseg"] == -1).any()
  assert example["depth"].shape == (16, 24, 1) and example["normal"].shape == (16, 24, 3)
  np.testing.assert_array_equal(example["depth"], np.load(root / "train" / "depth" / "3.npy"))
  with pytest.raises(IndexError, match="outside"):
    split.load(5)


def test_float64_and_fortran_order_files(root):
  image = np.load(root / "val" / "image" / "1.npy")
  normal = np.load(root / "val" / "normal" / "2.npy")
  np.save(root / "val" / "image" / "1.npy", image.astype(np.float64))
  np.save(root / "val" / "normal" / "2.npy", np.asfortranarray(normal))
  split = nyuv2.NYUv2Split(root, "val")
  assert split.load(1)["image"].dtype == np.float32
  np.testing.assert_array_equal(split.load(1)["image"], image)
  np.testing.assert_array_equal(split.load(2)["normal"], normal)


def test_load_does_not_parse_headers(root, monkeypatch):
  # np.load parses headers with ast.literal_eval, which races across tf.data's threads in CPython
  # 3.11 (gh-106905); load() must read at the offsets recorded on construction instead.
  split = nyuv2.NYUv2Split(root, "train")
  expected = np.load(root / "train" / "image" / "2.npy")
  monkeypatch.setattr(np, "load", None)
  np.testing.assert_array_equal(split.load(2)["image"], expected)


def _remove(path):
  shutil.rmtree(path) if path.is_dir() else path.unlink()


@pytest.mark.parametrize(
    "corrupt, error, match",
    [
        (lambda r: _remove(r), FileNotFoundError, "data_dir .* does not exist"),
        (lambda r: _remove(r / "train"), FileNotFoundError, "split folder .*train does not exist"),
        (
            lambda r: _remove(r / "train" / "normal"),
            FileNotFoundError,
            "train/normal does not exist",
        ),
        (
            lambda r: (r / "train/depth/4.npy").rename(r / "train/depth/7.npy"),
            ValueError,
            r"not exactly .*7\.npy",
        ),
        (lambda r: _remove(r / "train/label/4.npy"), ValueError, "has 4 files but .* has 5"),
        (
            lambda r: np.save(r / "train/depth/2.npy", np.zeros((16, 24), np.float32)),
            ValueError,
            r"depth/2\.npy has shape \(16, 24\); expected \(16, 24, 1\)",
        ),
        (
            lambda r: np.save(r / "train/normal/1.npy", np.zeros((16, 20, 3), np.float32)),
            ValueError,
            r"normal/1\.npy has shape",
        ),
        (
            lambda r: np.save(r / "train/label/0.npy", np.zeros((16, 24), np.int64)),
            ValueError,
            r"label/0\.npy has dtype int64; expected float32 or float64",
        ),
        (
            lambda r: (r / "train/image/0.npy").write_bytes(b"not an npy"),
            ValueError,
            "not a readable .npy",
        ),
    ],
)
def test_bad_layout_errors(root, corrupt, error, match):
  corrupt(root)
  with pytest.raises(error, match=match) as info:
    nyuv2.NYUv2Split(root, "train")
  assert "{image,label,depth,normal}/{i}.npy, 288x384" in str(info.value)


def test_empty_split(tmp_path):
  root = make_nyuv2_layout(tmp_path, splits={"train": 0})
  with pytest.raises(ValueError, match="split is empty"):
    nyuv2.NYUv2Split(root, "train")


def test_real_frames():
  data_dir = SHARED_DATA / "nyuv2_mini"
  if not data_dir.is_dir():
    pytest.skip(f"real NYUv2 frames not found at {data_dir} (../shared/data is absent)")
  train = nyuv2.NYUv2Split(data_dir, "train")
  assert (train.num_examples, train.image_shape) == (6, nyuv2.IMAGE_SHAPE)
  assert nyuv2.NYUv2Split(data_dir, "val").num_examples == 4
  labelled = np.load(data_dir / "train_labelled_tasks.npy")
  for i in range(train.num_examples):
    example = train.load(i)
    has = [
        (example["semseg"] >= 0).any(),
        (example["depth"] > 0).any(),
        (example["normal"] != 0).any(),
    ]
    np.testing.assert_array_equal(has, labelled[i] > 0)
    assert example["semseg"].min() >= -1 and example["semseg"].max() < nyuv2.NUM_CLASSES
    assert 0 <= example["image"].min() and example["image"].max() <= 1


def test_headers_read_by_many_threads_at_once_parse_every_time(tmp_path):
  """Header bytes are read concurrently (a bucket's latency) but parsed one at a time: parsing
  in 16 threads at once (ast.literal_eval) failed spuriously under CPython 3.11 (gh-106905)."""
  from etils import epath

  from mtjax.data import files

  paths = []
  for i in range(48):
    path = tmp_path / f"{i}.npy"
    np.save(path, np.zeros((2, i + 1, 3), np.float32 if i % 2 else np.uint8))
    paths.append(epath.Path(path))
  for _ in range(4):
    read = lambda p: files.read_header(p, "test", "layout")
    headers = files.map_in_threads(read, [(p,) for p in paths])
    assert [h.shape for h in headers] == [(2, i + 1, 3) for i in range(48)]
    assert [h.offset for h in headers] == [128] * 48
  (tmp_path / "bad.npy").write_bytes(b"\x93NUMPX" + b"\x00" * 20)
  with pytest.raises(ValueError, match="does not start with the .npy magic string"):
    files.read_header(epath.Path(tmp_path / "bad.npy"), "test", "layout")


def test_shared_reader_checks_name_the_dataset_the_file_and_the_layout(tmp_path):
  """``files.check_index`` / ``decode_image`` / ``mat_variable``: what every reader raises."""
  import scipy.io
  from etils import epath
  from PIL import Image

  from mtjax.data import files

  assert files.check_index(np.int64(4), 5, "X train") == 4
  for bad in (-1, 5):
    with pytest.raises(IndexError, match=rf"X train index {bad} outside \[0, 5\)"):
      files.check_index(bad, 5, "X train")
  png = tmp_path / "a.png"
  Image.fromarray(np.arange(12, dtype=np.uint8).reshape(3, 4)).save(png)
  np.testing.assert_array_equal(
      files.decode_image(epath.Path(png), None, "X", "layout"), np.arange(12).reshape(3, 4)
  )
  assert files.decode_image(epath.Path(png), "RGB", "X", "layout").shape == (3, 4, 3)
  (tmp_path / "b.png").write_bytes(b"not a png")
  with pytest.raises(ValueError, match=r"X file .*b\.png is not a readable image .*expected L/"):
    files.decode_image(epath.Path(tmp_path / "b.png"), None, "X", "L/")
  scipy.io.savemat(tmp_path / "c.mat", {"depth": np.ones((2, 3))})
  np.testing.assert_array_equal(
      files.mat_variable(epath.Path(tmp_path / "c.mat"), "depth", "X", "L/"), np.ones((2, 3))
  )
  with pytest.raises(ValueError, match=r"X file .*c\.mat has no readable variable 'seg'.*L/"):
    files.mat_variable(epath.Path(tmp_path / "c.mat"), "seg", "X", "L/")
