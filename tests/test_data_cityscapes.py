"""CityscapesSplit: layout validation, task selection, value checks and loading conventions."""

import shutil

import numpy as np
import pytest

from mtjax.data import cityscapes
from tests.data_fixtures import make_cityscapes_layout

HW = (8, 16)


@pytest.fixture
def root(tmp_path):
  return make_cityscapes_layout(tmp_path / "cityscapes", hw=HW)


def _snapshot(root):
  """Every path under ``root`` with its size and modification time (to prove nothing is written)."""
  return {
      str(p.relative_to(root)): (p.is_dir(), p.stat().st_size, p.stat().st_mtime_ns)
      for p in sorted(root.rglob("*"))
  }


def _remove(path):
  shutil.rmtree(path) if path.is_dir() else path.unlink()


def test_load_conventions(root):
  before = _snapshot(root)
  split = cityscapes.CityscapesSplit(root, "train")
  assert (split.num_examples, split.image_shape, split.split) == (5, HW, "train")
  assert split.tasks == split.label_tasks == cityscapes.CITYSCAPES_TASKS == ("semseg", "depth")
  assert split.has_instances is False
  assert split.example_id(3) == "3"
  example = split.load(3)
  assert set(example) == {"image", "semseg", "depth"}
  assert example["image"].dtype == np.float32 and example["image"].shape == (*HW, 3)
  assert 0 <= example["image"].min() and example["image"].max() <= 1
  np.testing.assert_array_equal(example["image"], np.load(root / "train/image/3.npy"))
  assert example["semseg"].dtype == np.int32 and example["semseg"].shape == HW
  np.testing.assert_array_equal(example["semseg"], np.load(root / "train/label_7/3.npy"))
  assert (example["semseg"] == -1).any() and example["semseg"].max() < cityscapes.NUM_CLASSES
  assert example["depth"].dtype == np.float32 and example["depth"].shape == (*HW, 1)
  np.testing.assert_array_equal(example["depth"], np.load(root / "train/depth/3.npy"))
  assert (example["depth"] == 0).any() and (example["depth"] > 0).any()
  assert cityscapes.CityscapesSplit(root, "val").num_examples == 3
  with pytest.raises(IndexError, match="outside"):
    split.load(5)
  with pytest.raises(IndexError, match="outside"):
    split.example_id(-1)
  assert _snapshot(root) == before  # Nothing written into data_dir.


def test_requested_tasks_only(root):
  _remove(root / "train" / "depth")
  with pytest.raises(FileNotFoundError, match="train/depth does not exist"):
    cityscapes.CityscapesSplit(root, "train")
  split = cityscapes.CityscapesSplit(root, "train", tasks=("semseg",))
  assert split.tasks == ("semseg",) and split.label_tasks == cityscapes.CITYSCAPES_TASKS
  assert set(split.load(0)) == {"image", "semseg"}

  _remove(root / "val" / "label_7")
  (root / "val" / "label_2").mkdir()  # Other MTAN folders are ignored.
  split = cityscapes.CityscapesSplit(root, "val", tasks=["depth"])
  assert split.tasks == ("depth",) and set(split.load(2)) == {"image", "depth"}


def test_tasks_in_dataset_order_and_bad_tasks(root):
  split = cityscapes.CityscapesSplit(root, "train", tasks=("depth", "semseg"))
  assert split.tasks == ("semseg", "depth")
  for bad, match in [
      (("normal",), r"unknown: \['normal'\]"),
      ((), "non-empty"),
      (("depth", "depth"), "distinct"),
  ]:
    with pytest.raises(ValueError, match=match):
      cityscapes.CityscapesSplit(root, "train", tasks=bad)


def test_other_dtypes_and_memory_orders(root):
  image = np.load(root / "val/image/1.npy")
  label = np.load(root / "val/label_7/2.npy")
  depth = np.load(root / "val/depth/0.npy")
  np.save(root / "val/image/1.npy", np.asfortranarray(image.astype(np.float64)))
  np.save(root / "val/label_7/2.npy", label.astype(np.int8))
  np.save(root / "val/label_7/0.npy", np.load(root / "val/label_7/0.npy").astype(np.int64))
  np.save(root / "val/depth/0.npy", depth.astype(">f4"))  # Big-endian.
  split = cityscapes.CityscapesSplit(root, "val")
  loaded = split.load(1)["image"]
  assert loaded.dtype == np.float32
  np.testing.assert_array_equal(loaded, image)
  np.testing.assert_array_equal(split.load(2)["semseg"], label)
  assert split.load(2)["semseg"].dtype == np.int32
  np.testing.assert_array_equal(split.load(0)["depth"], depth)


def test_image_within_tolerance_is_clipped(root):
  image = np.load(root / "train/image/0.npy")
  image[0, 0] = [1.0005, -0.0005, 0.5]
  np.save(root / "train/image/0.npy", image)
  loaded = cityscapes.CityscapesSplit(root, "train").load(0)["image"]
  np.testing.assert_array_equal(loaded[0, 0], np.float32([1.0, 0.0, 0.5]))


def test_load_does_not_parse_headers(root, monkeypatch):
  # np.load parses headers with ast.literal_eval, which races across tf.data's threads in CPython
  # 3.11 (gh-106905); load() must read at the offsets recorded on construction instead.
  split = cityscapes.CityscapesSplit(root, "train")
  expected = np.load(root / "train" / "label_7" / "2.npy")
  monkeypatch.setattr(np, "load", None)
  np.testing.assert_array_equal(split.load(2)["semseg"], expected)


def _truncate(path):
  path.write_bytes(path.read_bytes()[:-8])


@pytest.mark.parametrize(
    "corrupt, error, match",
    [
        (lambda r: _remove(r), FileNotFoundError, "data_dir .* does not exist"),
        (lambda r: _remove(r / "train"), FileNotFoundError, "split folder .*train does not exist"),
        (lambda r: _remove(r / "train/image"), FileNotFoundError, "train/image does not exist"),
        (lambda r: _remove(r / "train/label_7"), FileNotFoundError, "train/label_7 does not exist"),
        (
            lambda r: (r / "train/depth/4.npy").rename(r / "train/depth/7.npy"),
            ValueError,
            r"not exactly .*7\.npy",
        ),
        (
            lambda r: (r / "train/image/x.npy").write_bytes(b""),
            ValueError,
            r"not exactly .*x\.npy",
        ),
        (lambda r: _remove(r / "train/label_7/4.npy"), ValueError, "has 4 files but .* has 5"),
        (lambda r: _remove(r / "train/image/4.npy"), ValueError, "has 5 files but .* has 4"),
        (
            lambda r: np.save(r / "train/depth/2.npy", np.zeros(HW, np.float32)),
            ValueError,
            r"depth/2\.npy has shape \(8, 16\); expected \(8, 16, 1\)",
        ),
        (
            lambda r: np.save(r / "train/label_7/1.npy", np.zeros((8, 12), np.float32)),
            ValueError,
            r"label_7/1\.npy has shape \(8, 12\); expected \(8, 16\)",
        ),
        (
            lambda r: np.save(r / "train/image/0.npy", np.zeros((*HW, 4), np.float32)),
            ValueError,
            r"image/0\.npy has shape \(8, 16, 4\); expected \[H, W, 3\]",
        ),
        (
            lambda r: np.save(r / "train/label_7/0.npy", np.zeros(HW, np.uint8)),
            ValueError,
            r"label_7/0\.npy has dtype uint8; expected a float or signed-integer dtype",
        ),
        (
            lambda r: np.save(r / "train/image/3.npy", np.zeros((*HW, 3), np.uint8)),
            ValueError,
            r"image/3\.npy has dtype uint8; expected a float dtype",
        ),
        (
            lambda r: np.save(r / "train/depth/3.npy", np.zeros((*HW, 1), np.int32)),
            ValueError,
            r"depth/3\.npy has dtype int32; expected a float dtype",
        ),
        (
            lambda r: (r / "train/image/0.npy").write_bytes(b"not an npy"),
            ValueError,
            r"image/0\.npy is not a readable .npy",
        ),
        (
            lambda r: _truncate(r / "train/depth/1.npy"),
            ValueError,
            r"depth/1\.npy is not a readable",
        ),
        (
            lambda r: np.save(r / "train/label_7/2.npy", np.array([None] * 128).reshape(HW)),
            ValueError,
            r"label_7/2\.npy is not a readable",
        ),
    ],
)
def test_bad_layout_errors(root, corrupt, error, match):
  corrupt(root)
  before = _snapshot(root) if root.is_dir() else None
  with pytest.raises(error, match=match) as info:
    cityscapes.CityscapesSplit(root, "train")
  assert "train/{image,label_7,depth}/{i}.npy, 128x256" in str(info.value)
  if before is not None:
    assert _snapshot(root) == before


def test_layout_in_errors_names_requested_folders_only(root):
  _remove(root / "train" / "image" / "0.npy")
  with pytest.raises(ValueError, match=r"train/\{image,label_7\}/\{i\}\.npy, 128x256"):
    cityscapes.CityscapesSplit(root, "train", tasks=("semseg",))


def test_empty_split(tmp_path):
  root = make_cityscapes_layout(tmp_path, splits={"train": 0})
  with pytest.raises(ValueError, match="split is empty"):
    cityscapes.CityscapesSplit(root, "train")


def _set_pixel(path, value, where=(0, 0)):
  array = np.load(path)
  array[where] = value
  np.save(path, array)


@pytest.mark.parametrize(
    "folder, value, match",
    [
        ("label_7", 7, r"label_7/2\.npy has 1 pixels outside the class ids \{-1, 0\.\.6\}"),
        ("label_7", -2, r"label_7/2\.npy has 1 pixels outside"),
        ("label_7", 2.5, r"label_7/2\.npy has 1 pixels outside"),
        ("label_7", np.nan, r"label_7/2\.npy has 1 pixels outside"),
        ("depth", -0.1, r"depth/2\.npy has 1 negative or non-finite pixels"),
        ("depth", np.nan, r"depth/2\.npy has 1 negative or non-finite"),
        ("depth", np.inf, r"depth/2\.npy has 1 negative or non-finite"),
        ("image", 1.01, r"image/2\.npy has 1 values outside \[0, 1\]"),
        ("image", -0.01, r"image/2\.npy has 1 values outside"),
        ("image", np.nan, r"image/2\.npy has 1 values outside .* or non-finite"),
    ],
)
def test_bad_values_errors(root, folder, value, match):
  path = root / "train" / folder / "2.npy"
  _set_pixel(path, value, where=(1, 3, 0) if folder != "label_7" else (1, 3))
  before = _snapshot(root)
  split = cityscapes.CityscapesSplit(root, "train")  # Headers are fine: values are checked on load.
  split.load(1)
  with pytest.raises(ValueError, match=match) as info:
    split.load(2)
  assert str(path) in str(info.value)
  assert _snapshot(root) == before
  # A task that is not requested is not read, so its values are not checked.
  if folder != "image":
    other = ("depth",) if folder == "label_7" else ("semseg",)
    assert set(cityscapes.CityscapesSplit(root, "train", tasks=other).load(2)) == {"image", *other}
