"""NYUDMTSplit: the three archives' on-disk formats, mtjax conventions, fitting, layout errors."""

import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from mtjax.data import geometry, nyudmt
from tests.nyudmt_fixtures import make_nyudmt_layout

HW = (12, 16)
ALL_KEYS = ("image", *nyudmt.NYUDMT_TASKS)


@pytest.fixture(params=nyudmt.ARCHIVES)
def archive(request):
  return request.param


def _make(tmp_path, archive, **kwargs):
  kwargs.setdefault("hw", HW)
  return make_nyudmt_layout(tmp_path / archive, archive, **kwargs)


def _ids(root, split="train"):
  return (root / "gt_sets" / f"{split}.txt").read_text().split()


def _expected(root, archive, i):
  """The native example of id ``i``, decoded from the raw files independently of the reader."""
  ext = nyudmt._FORMATS[archive]
  pil = lambda folder, kind: np.asarray(Image.open(root / folder / f"{i}.{ext[kind]}"))
  image = np.asarray(Image.open(root / "images" / f"{i}.{ext['image']}").convert("RGB"))
  if archive == "astmt":
    semseg = scipy.io.loadmat(root / "segmentation" / f"{i}.mat")["segmentation"]
    depth = scipy.io.loadmat(root / "depth" / f"{i}.mat")["depth"]
  else:
    semseg = pil("segmentation", "semseg")
    depth = np.load(root / "depth" / f"{i}.npy")
  if archive == "mtinet":
    normal = np.load(root / "normals" / f"{i}.npy")
    edge = np.load(root / "edge" / f"{i}.npy")
  else:
    normal = 2.0 * pil("normals", "normal").astype(np.float32) / 255.0 - 1.0
    edge = pil("edge", "edge") / 255.0
  return {
      "image": image / 255.0,
      "semseg": np.where(semseg == 0, -1, semseg.astype(np.int64) - 1),
      "depth": depth[..., None],
      "normal": normal,
      "edge": edge[..., None],
  }


def test_read_conventions(tmp_path, archive):
  root = _make(tmp_path, archive)
  for split, n in (("train", 3), ("val", 2)):
    data = nyudmt.NYUDMTSplit(root, split, archive=archive)
    assert (data.num_examples, data.split, data.tasks) == (n, split, nyudmt.NYUDMT_TASKS)
    assert (data.label_tasks, data.image_shape, data.has_instances, data.has_box) == (
        nyudmt.NYUDMT_TASKS,
        (480, 640),
        False,
        True,
    )
    assert [data.example_id(k) for k in range(n)] == _ids(root, split)
    assert data.native_shapes == (HW,) * n
    for k in range(n):
      example, expected = data.read(k), _expected(root, archive, data.example_id(k))
      assert tuple(example) == ALL_KEYS
      for key, shape, dtype in (
          ("image", HW + (3,), np.float32),
          ("semseg", HW, np.int32),
          ("depth", HW + (1,), np.float32),
          ("normal", HW + (3,), np.float32),
          ("edge", HW + (1,), np.float32),
      ):
        assert example[key].shape == shape and example[key].dtype == dtype, key
        np.testing.assert_allclose(example[key], expected[key], rtol=1e-6, atol=1e-6, err_msg=key)
      assert 0.0 <= example["image"].min() and example["image"].max() <= 1.0
      assert example["semseg"].min() >= -1 and example["semseg"].max() < nyudmt.NUM_CLASSES
      assert set(np.unique(example["edge"])) <= {0.0, 1.0}
      assert (example["depth"] >= 0).all()
  # The fixture's encodings: unlabelled pixels, invalid depth, and (npy only) invalid normals.
  example = nyudmt.NYUDMTSplit(root, "train", archive=archive).read(0)
  assert (example["semseg"] == -1).any() and (example["depth"] == 0).any()
  zero = ~example["normal"].any(axis=-1)
  assert zero.any() if archive == "mtinet" else not zero.any()


def _fitted(example, size, geometry_name, role, tasks):
  return geometry.fit(example, size=size, geometry=geometry_name, role=role, tasks=tasks)


@pytest.mark.parametrize(
    "tasks",
    [
        ("semseg", "depth", "edge"),
        nyudmt.NYUDMT_TASKS,
    ],
)
def test_load_resize_train(tmp_path, tasks):
  root = _make(tmp_path, "mtinet")
  data = nyudmt.NYUDMTSplit(root, "train", tasks=tasks, size=(20, 24), role="train")
  example, native = data.load(1), data.read(1)
  assert tuple(example) == ("image", *tasks, "box")
  np.testing.assert_array_equal(example["box"], [0, 0, 20, 24])
  assert example["box"].dtype == np.int32
  assert example["image"].shape == (20, 24, 3) and example["semseg"].shape == (20, 24)
  np.testing.assert_allclose(
      example["image"], np.clip(geometry.resize(native["image"], (20, 24), "cubic"), 0, 1)
  )
  # Labels nearest-resized: every value comes from the native map.
  for key in tasks:
    assert example[key].shape[:2] == (20, 24)
    if key != "normal":
      assert set(np.unique(example[key])) <= set(np.unique(native[key])), key


def test_load_resize_eval(tmp_path, archive):
  root = _make(tmp_path, archive)
  data = nyudmt.NYUDMTSplit(root, "val", archive=archive, size=(16, 20), role="eval")
  example, native = data.load(0), data.read(0)
  np.testing.assert_array_equal(example["box"], [0, 0, 12, 16])
  np.testing.assert_allclose(
      example["image"], np.clip(geometry.resize(native["image"], (16, 20), "cubic"), 0, 1)
  )
  for key, ignore in (("semseg", -1), ("depth", 0), ("normal", 0), ("edge", 255)):
    assert example[key].shape[:2] == (16, 20)
    np.testing.assert_array_equal(example[key][:12, :16], native[key], err_msg=key)
    assert (example[key][12:] == ignore).all() and (example[key][:, 16:] == ignore).all(), key


def test_load_pad_centres(tmp_path, archive):
  root = _make(tmp_path, archive)
  data = nyudmt.NYUDMTSplit(root, "train", archive=archive, size=(15, 21), geometry="pad")
  example, native = data.load(2), data.read(2)
  top, left = (15 - 12) // 2, (21 - 16) // 2  # InvPT PadImage: delta // 2.
  np.testing.assert_array_equal(example["box"], [top, left, 12, 16])
  for key, fill in (("image", 0), ("semseg", -1), ("depth", 0), ("normal", 0), ("edge", 255)):
    assert example[key].shape[:2] == (15, 21)
    np.testing.assert_array_equal(
        example[key][top : top + 12, left : left + 16], native[key], err_msg=key
    )
    outside = np.ones((15, 21), bool)
    outside[top : top + 12, left : left + 16] = False
    assert (example[key][outside] == fill).all(), key


def test_variable_sizes_pad_and_canvas(tmp_path):
  root = _make(tmp_path, "atrc", hw=(14, 18), size_jitter=3, splits={"train": 6})
  data = nyudmt.NYUDMTSplit(root, "train", archive="atrc", size=(14, 18), geometry="pad")
  assert len(set(data.native_shapes)) > 1
  for k, (h, w) in enumerate(data.native_shapes):
    example = data.load(k)
    np.testing.assert_array_equal(example["box"], [(14 - h) // 2, (18 - w) // 2, h, w])
    assert data.read(k)["image"].shape == (h, w, 3)
  # Too small a canvas fails on construction for pad and evaluation resize, not training resize.
  for geometry_name, role in (("pad", "train"), ("pad", "eval"), ("resize", "eval")):
    match = r"images/\d{4}\.png is \d+x\d+, larger than the 11x18 canvas"
    with pytest.raises(ValueError, match=match):
      nyudmt.NYUDMTSplit(
          root, "train", archive="atrc", size=(11, 18), geometry=geometry_name, role=role
      )
  data = nyudmt.NYUDMTSplit(
      root, "train", archive="atrc", tasks=("semseg", "depth", "edge"), size=(11, 18)
  )
  assert data.load(0)["image"].shape == (11, 18, 3)


def test_subset_of_tasks_reads_only_those(tmp_path, archive):
  root = _make(tmp_path, archive)
  for folder in ("segmentation", "normals", "edge"):
    shutil.rmtree(root / folder)
  data = nyudmt.NYUDMTSplit(root, "train", archive=archive, tasks=("depth",), size=HW)
  assert data.tasks == ("depth",)
  assert tuple(data.read(0)) == ("image", "depth")
  assert tuple(data.load(0)) == ("image", "depth", "box")
  with pytest.raises(FileNotFoundError, match="segmentation does not exist"):
    nyudmt.NYUDMTSplit(root, "train", archive=archive, tasks=("semseg", "depth"))
  # Dataset order, whatever the order asked; a string is one task.
  root2 = _make(tmp_path / "b", archive)
  assert nyudmt.NYUDMTSplit(root2, "val", archive=archive, tasks=("edge", "semseg")).tasks == (
      "semseg",
      "edge",
  )
  assert nyudmt.NYUDMTSplit(root2, "val", archive=archive, tasks="normal").tasks == ("normal",)


def _snapshot(root: Path):
  out = {}
  for dirpath, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
      stat = os.stat(os.path.join(dirpath, name))
      out[os.path.join(dirpath, name)] = (stat.st_size, stat.st_mtime_ns)
  return out


def test_data_dir_is_never_written(tmp_path, archive):
  root = _make(tmp_path, archive)
  before = _snapshot(root)
  for split in ("train", "val"):
    for geometry_name in ("resize", "pad"):
      data = nyudmt.NYUDMTSplit(
          root, split, archive=archive, size=(16, 20), geometry=geometry_name, role="eval"
      )
      for k in range(data.num_examples):
        data.load(k)
  assert _snapshot(root) == before


def test_load_is_thread_safe_without_np_load(tmp_path, monkeypatch):
  # np.load parses headers with ast.literal_eval, which races across tf.data's threads in CPython
  # 3.11 (gh-106905): read() must use the offsets recorded on construction instead.
  root = _make(tmp_path, "mtinet", splits={"train": 4})
  data = nyudmt.NYUDMTSplit(root, "train", size=(14, 18), geometry="pad")
  serial = [data.load(k) for k in range(4)]
  monkeypatch.setattr(np, "load", None)
  with ThreadPoolExecutor(8) as pool:
    parallel = list(pool.map(data.load, [k % 4 for k in range(32)]))
  for k, example in enumerate(parallel):
    for key, value in serial[k % 4].items():
      np.testing.assert_array_equal(example[key], value)


def test_tolerated_variants(tmp_path):
  root = _make(tmp_path, "mtinet")
  i = _ids(root)[0]
  normal = np.load(root / "normals" / f"{i}.npy")
  depth = np.load(root / "depth" / f"{i}.npy")
  edge = np.load(root / "edge" / f"{i}.npy")
  overshoot = normal.copy()
  overshoot[0, 0] = (1.0005, 0.0, 0.0)
  np.save(root / "normals" / f"{i}.npy", np.asfortranarray(overshoot))
  np.save(root / "depth" / f"{i}.npy", depth[..., None].astype(np.float64))
  np.save(root / "edge" / f"{i}.npy", edge.astype(bool)[..., None])
  semseg = np.asarray(Image.open(root / "segmentation" / f"{i}.png"))
  palette = Image.fromarray(semseg, mode="L").convert("P")  # Same indices, a palette image.
  palette.save(root / "segmentation" / f"{i}.png")
  (root / "gt_sets" / "train.txt").write_text("\r\n".join(_ids(root)) + "\r\n\r\n")
  example = nyudmt.NYUDMTSplit(root, "train").read(0)
  np.testing.assert_array_equal(example["normal"][0, 0], [1.0, 0.0, 0.0])
  np.testing.assert_array_equal(example["normal"][1:], normal[1:])
  np.testing.assert_array_equal(example["depth"], depth[..., None].astype(np.float32))
  np.testing.assert_array_equal(example["edge"], edge[..., None])
  np.testing.assert_array_equal(example["semseg"], np.where(semseg == 0, -1, semseg - 1.0))


def _first(root, folder):
  i = _ids(root)[0]
  return next((root / folder).glob(f"{i}.*"))


def _rm(path):
  shutil.rmtree(path) if path.is_dir() else path.unlink()


def _save_npy(folder, array):
  return lambda r: np.save(_first(r, folder), array)


def _savemat(folder, mapping):
  return lambda r: scipy.io.savemat(_first(r, folder), mapping)


def _save_image(folder, array, fmt):
  return lambda r: Image.fromarray(array).save(_first(r, folder), format=fmt)


_U8 = lambda *shape: np.zeros(shape, np.uint8)


@pytest.mark.parametrize(
    "archive_name, corrupt, error, match",
    [
        ("mtinet", _rm, FileNotFoundError, "data_dir .* does not exist"),
        (
            "mtinet",
            lambda r: _rm(r / "gt_sets" / "train.txt"),
            FileNotFoundError,
            r"split file .*gt_sets/train\.txt does not exist",
        ),
        (
            "atrc",
            lambda r: _rm(r / "normals"),
            FileNotFoundError,
            "folder .*normals does not exist",
        ),
        (
            "mtinet",
            lambda r: _rm(_first(r, "images")),
            FileNotFoundError,
            r"file .*images/\d{4}\.jpg does not exist \(1 of the 3 ids of .*train\.txt lack",
        ),
        (
            "astmt",
            lambda r: _rm(_first(r, "depth")),
            FileNotFoundError,
            r"file .*depth/\d{4}\.mat does not exist",
        ),
        (
            "mtinet",
            lambda r: (r / "gt_sets" / "train.txt").write_text("9999\n"),
            FileNotFoundError,
            r"images/9999\.jpg does not exist",
        ),
        (
            "mtinet",
            lambda r: (r / "gt_sets" / "train.txt").write_text("\n \n"),
            ValueError,
            r"split is empty: no ids in .*train\.txt",
        ),
        (
            "mtinet",
            lambda r: (r / "gt_sets" / "train.txt").write_text("0001\n0002\n0001\n"),
            ValueError,
            r"repeats ids \['0001'\]",
        ),
        (
            "mtinet",
            lambda r: (r / "gt_sets" / "train.txt").write_text("../images/0001\n"),
            ValueError,
            "not plain file stems",
        ),
        (
            "mtinet",
            lambda r: _first(r, "images").write_bytes(b"not a jpeg"),
            ValueError,
            r"images/\d{4}\.jpg is not a readable jpg image",
        ),
        (
            "mtinet",
            _save_image("images", _U8(12, 16, 3), "PNG"),
            ValueError,
            r"images/\d{4}\.jpg is a PNG file, not a JPEG",
        ),
        (
            "mtinet",
            _save_image("segmentation", _U8(12, 15), "PNG"),
            ValueError,
            r"segmentation/\d{4}\.png is 12x15 but its image is 12x16",
        ),
        (
            "mtinet",
            _save_image("segmentation", _U8(12, 16, 3), "PNG"),
            ValueError,
            r"segmentation/\d{4}\.png has PIL mode RGB; expected L or P or I;16 or I",
        ),
        (
            "mtinet",
            _save_npy("depth", np.zeros((12, 16, 2), np.float32)),
            ValueError,
            r"depth/\d{4}\.npy has shape \(12, 16, 2\); expected \(h, w\) or \(h, w, 1\)",
        ),
        (
            "mtinet",
            _save_npy("depth", np.zeros((10, 16), np.float32)),
            ValueError,
            r"depth/\d{4}\.npy \(npy header\) is 10x16 but its image is 12x16",
        ),
        (
            "atrc",
            _save_npy("depth", np.zeros((12, 16), np.int32)),
            ValueError,
            r"depth/\d{4}\.npy has dtype int32; expected a float dtype",
        ),
        (
            "mtinet",
            _save_npy("normals", np.zeros((12, 16), np.float32)),
            ValueError,
            r"normals/\d{4}\.npy has shape \(12, 16\); expected \(h, w, 3\)",
        ),
        (
            "mtinet",
            _save_npy("edge", np.array(["a"] * 192).reshape(12, 16)),
            ValueError,
            r"edge/\d{4}\.npy has dtype <U1; expected a float, integer or bool dtype",
        ),
        (
            "mtinet",
            lambda r: _first(r, "edge").write_bytes(b"\x93NUMPY garbage"),
            ValueError,
            r"edge/\d{4}\.npy is not a readable \.npy",
        ),
        (
            "atrc",
            _save_image("normals", _U8(12, 16), "PNG"),
            ValueError,
            r"normals/\d{4}\.png has PIL mode L; expected RGB",
        ),
        (
            "atrc",
            _save_image("edge", _U8(12, 16, 3), "PNG"),
            ValueError,
            r"edge/\d{4}\.png has PIL mode RGB; expected L or P",
        ),
        (
            "astmt",
            _save_image("normals", _U8(12, 16, 3), "PNG"),
            ValueError,
            r"normals/\d{4}\.jpg is a PNG file, not a JPEG",
        ),
        (
            "astmt",
            _savemat("segmentation", {"labels": _U8(12, 16)}),
            ValueError,
            r"segmentation/\d{4}\.mat has no variable 'segmentation' \(has \['labels'\]\)",
        ),
        (
            "astmt",
            _savemat("depth", {"depth": np.zeros((12, 15))}),
            ValueError,
            r"depth/\d{4}\.mat variable 'depth' is 12x15 but its image is 12x16",
        ),
        (
            "astmt",
            _savemat("depth", {"depth": _U8(12, 16)}),
            ValueError,
            r"depth/\d{4}\.mat has depth of MATLAB class 'uint8'",
        ),
        (
            "astmt",
            _savemat("segmentation", {"segmentation": _U8(12, 16, 2)}),
            ValueError,
            r"has segmentation of shape \(12, 16, 2\); expected \[h, w\]",
        ),
        (
            "astmt",
            lambda r: _first(r, "segmentation").write_bytes(b"not a mat file at all"),
            ValueError,
            r"segmentation/\d{4}\.mat is not a readable MATLAB v5 \.mat",
        ),
    ],
)
def test_bad_layout_errors(tmp_path, archive_name, corrupt, error, match):
  root = _make(tmp_path, archive_name)
  corrupt(root)
  with pytest.raises(error, match=match) as info:
    nyudmt.NYUDMTSplit(root, "train", archive=archive_name)
  assert f"NYUD-MT layout of archive {archive_name!r}" in str(info.value)


def test_wrong_archive_hint(tmp_path):
  root = _make(tmp_path, "mtinet")
  with pytest.raises(FileNotFoundError, match=r"images/\d{4}\.png does not exist") as info:
    nyudmt.NYUDMTSplit(root, "train", archive="atrc")
  assert "archive 'mtinet' or 'astmt' stores images/ as .jpg" in str(info.value)


def test_nested_data_dir_hint(tmp_path):
  _make(tmp_path / "data", "mtinet")
  with pytest.raises(FileNotFoundError, match="mtinet holds the dataset folders: set data_dir"):
    nyudmt.NYUDMTSplit(tmp_path / "data", "train")


def _edit_npy(folder, edit):
  def corrupt(root):
    path = _first(root, folder)
    array = np.load(path)
    edit(array)
    np.save(path, array)

  return corrupt


def _edit_image(folder, edit):
  def corrupt(root):
    path = _first(root, folder)
    array = np.array(Image.open(path))
    edit(array)
    Image.fromarray(array).save(path, format="PNG")

  return corrupt


def _edit_mat(folder, key, edit):
  def corrupt(root):
    path = _first(root, folder)
    array = scipy.io.loadmat(path)[key].astype(np.float64)
    edit(array)
    scipy.io.savemat(path, {key: array})

  return corrupt


@pytest.mark.parametrize(
    "archive_name, corrupt, match",
    [
        (
            "mtinet",
            _edit_image("segmentation", lambda a: a.__setitem__((0, 0), 41)),
            (
                r"segmentation/\d{4}\.png has 1 semseg values outside the integers 0\.\.40 "
                r"\(e\.g\. \[41\]\)"
            ),
        ),
        (
            "astmt",
            _edit_mat("segmentation", "segmentation", lambda a: a.__setitem__((1, 1), 2.5)),
            r"segmentation/\d{4}\.mat has 1 semseg values outside the integers 0\.\.40",
        ),
        (
            "mtinet",
            _edit_npy("edge", lambda a: a.__setitem__((0, 0), 0.5)),
            r"edge/\d{4}\.npy has 1 edge values outside \{0, 1\}",
        ),
        (
            "atrc",
            _edit_image("edge", lambda a: a.__setitem__((0, 0), 128)),
            r"edge/\d{4}\.png has 1 edge values outside \{0, 255\}",
        ),
        (
            "mtinet",
            _edit_npy("normals", lambda a: a.__setitem__((0, 0), (1.5, 0.0, 0.0))),
            r"normals/\d{4}\.npy has 1 normal components outside \[-1, 1\]",
        ),
        (
            "mtinet",
            _edit_npy("depth", lambda a: a.__setitem__((0, 0), -1.0)),
            r"depth/\d{4}\.npy has 1 negative or non-finite depths",
        ),
        (
            "astmt",
            _edit_mat("depth", "depth", lambda a: a.__setitem__((0, 0), np.nan)),
            r"depth/\d{4}\.mat has 1 negative or non-finite depths",
        ),
    ],
)
def test_value_errors_on_read(tmp_path, archive_name, corrupt, match):
  root = _make(tmp_path, archive_name)
  corrupt(root)
  data = nyudmt.NYUDMTSplit(root, "train", archive=archive_name)  # Headers are fine.
  data.read(1)
  with pytest.raises(ValueError, match=match):
    data.read(0)


def test_file_changed_after_construction(tmp_path):
  root = _make(tmp_path, "atrc")
  data = nyudmt.NYUDMTSplit(root, "train", archive="atrc")
  Image.fromarray(_U8(10, 16, 3)).save(_first(root, "images"), format="PNG")
  with pytest.raises(ValueError, match=r"images/\d{4}\.png decodes to shape \(10, 16, 3\)"):
    data.read(0)
  depth = root / "depth" / f"{data.example_id(1)}.npy"
  depth.write_bytes(depth.read_bytes()[:-8])
  with pytest.raises(ValueError, match=r"depth/\d{4}\.npy holds 190 values, fewer than"):
    data.read(1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tasks": ()}, r"tasks=\(\)"),
        ({"tasks": ("normals",)}, r"unknown: \['normals'\]"),
        ({"tasks": ("depth", "depth")}, "distinct"),
        ({"archive": "nyudv2"}, "archive='nyudv2'"),
        ({"size": (0, 16)}, r"size=\(0, 16\)"),
        ({"size": (12,)}, r"size=\(12,\)"),
        ({"geometry": "crop"}, "geometry='crop'"),
        ({"role": "test"}, "role='test'"),
        ({"normal_interpolation": "linear"}, "normal_interpolation='linear'"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
  with pytest.raises(ValueError, match=match):
    nyudmt.NYUDMTSplit(tmp_path, "train", **kwargs)


def test_index_errors(tmp_path):
  data = nyudmt.NYUDMTSplit(_make(tmp_path, "mtinet"), "val")
  for call in (data.read, data.load, data.example_id):
    with pytest.raises(IndexError, match=r"val index 2 outside \[0, 2\)"):
      call(2)
  with pytest.raises(IndexError):
    data.example_id(-1)
