"""PascalContextSplit: reading conventions, fitting, task subsets and layout errors."""

import concurrent.futures
import json
import shutil

import cv2
import numpy as np
import pytest
import scipy.io
from PIL import Image

from mtjax.data import pascal_context as pc
from mtjax.ops import boundaries
from tests import pascal_fixtures as fx

TRAIN_IDS = ["2008_000002", "2008_000004", "2008_000006"]

# The part groups written out independently of the module (DATA_AND_METRICS "PASCAL-Context").
GROUP = {
    "hair": 1,
    "head": 1,
    "reye": 1,
    "neck": 2,
    "torso": 2,
    "luarm": 3,
    "rlarm": 4,
    "lhand": 4,
    "ruleg": 5,
    "llleg": 6,
    "rfoot": 6,
}


@pytest.fixture
def root(tmp_path):
  return fx.make_pascal_layout(tmp_path / "PASCAL_MT")


def _png(path):
  with Image.open(path) as im:
    return np.asarray(im)


def _expected_parts(hw):
  expected = np.zeros(hw, np.int32)
  for _, parts in (fx.PERSON_A, fx.PERSON_B):  # In file order; later parts overwrite.
    for name, (r0, r1, c0, c1) in parts:
      expected[r0:r1, c0:c1] = GROUP[name]
  return expected


def _expected_edge(labels):
  # 4-neighbour Laplacian with reflect-101 borders (cv2's default), then bwmorph thin.
  x = np.pad(labels.astype(np.int64), 1, mode="reflect")
  lap = x[:-2, 1:-1] + x[2:, 1:-1] + x[1:-1, :-2] + x[1:-1, 2:] - 4 * x[1:-1, 1:-1]
  return boundaries.thin(lap != 0).astype(np.float32)[..., None]


def test_attributes_and_ids(root):
  split = pc.PascalContextSplit(root, "train", tasks=("edge", "semseg"), size=(64, 48))
  assert split.num_examples == 3 and split.split == "train"
  assert split.tasks == ("semseg", "edge") and split.label_tasks == pc.PASCAL_TASKS
  assert split.image_shape == (64, 48) and split.has_instances is False
  assert [split.example_id(i) for i in range(3)] == TRAIN_IDS
  assert pc.PascalContextSplit(root, "val").example_id(1) == "2008_000010"
  with pytest.raises(IndexError, match="outside"):
    split.example_id(3)
  with pytest.raises(IndexError, match="outside"):
    split.read(-1)


def test_read_conventions(root):
  split = pc.PascalContextSplit(root, "train")
  for index, image_id in enumerate(TRAIN_IDS):
    ex = split.read(index)
    h, w = fx.DEFAULT_HW[index]
    assert set(ex) == {"image", *pc.PASCAL_TASKS}
    with Image.open(root / "JPEGImages" / f"{image_id}.jpg") as im:
      np.testing.assert_array_equal(ex["image"], np.asarray(im.convert("RGB")) / np.float32(255))
    assert ex["image"].dtype == np.float32 and ex["image"].shape == (h, w, 3)

    # semseg: VOC12 png first (example 0 also has an all-7 pascal-context png); 255 -> -1.
    folder = "VOC12" if index % 2 == 0 else "pascal-context"
    raw = _png(root / "semseg" / folder / f"{image_id}.png")
    assert ex["semseg"].dtype == np.int32 and ex["semseg"].shape == (h, w)
    np.testing.assert_array_equal(ex["semseg"][1:], raw[1:])
    assert (ex["semseg"][0] == -1).all()

    sal = _png(root / "sal_distill" / f"{image_id}.png")
    assert ex["saliency"].dtype == np.float32 and ex["saliency"].shape == (h, w, 1)
    np.testing.assert_array_equal(ex["saliency"][..., 0], (sal >= 128).astype(np.float32))
    assert ex["saliency"][0, 0, 0] == 0 and ex["saliency"][0, 1, 0] == 1  # 127 and 128.

    labels = scipy.io.loadmat(root / "pascal-context" / "trainval" / f"{image_id}.mat")["LabelMap"]
    keep = np.isin(labels, list(fx.NORMAL_CLASSES))
    assert keep.any() and not keep.all()
    decoded = _png(root / "normals_distill" / f"{image_id}.png") * (2 / 255) - 1
    unit = decoded / np.linalg.norm(decoded, axis=-1, keepdims=True)
    assert ex["normal"].dtype == np.float32 and ex["normal"].shape == (h, w, 3)
    np.testing.assert_allclose(ex["normal"][keep], unit[keep], atol=1e-6)
    assert (ex["normal"][~keep] == 0).all()
    np.testing.assert_allclose(np.linalg.norm(ex["normal"][keep], axis=-1), 1, atol=1e-6)

    assert ex["edge"].dtype == np.float32 and ex["edge"].shape == (h, w, 1)
    np.testing.assert_array_equal(ex["edge"], _expected_edge(labels))
    assert 0 < ex["edge"].sum() < h * w

    assert ex["human_parts"].dtype == np.int32 and ex["human_parts"].shape == (h, w)
    if index == 0:  # Persons A and B painted; the dog's head and the partless person are not.
      np.testing.assert_array_equal(ex["human_parts"], _expected_parts((h, w)))
      assert ex["human_parts"][7, 7] == 2  # B's torso over A's right lower arm.
    else:  # No person (1); a person without parts (2).
      assert (ex["human_parts"] == -1).all()


def test_edge_thinning_matters(root):
  # The raw |Laplacian| > 0 band is two pixels wide along block borders: thin removes pixels.
  labels = scipy.io.loadmat(_first(root, "pascal-context/trainval", ".mat"))["LabelMap"]
  band = np.abs(cv2.Laplacian(labels, cv2.CV_64F)) > 0
  edge = pc.PascalContextSplit(root, "train", tasks=("edge",)).read(0)["edge"][..., 0]
  assert edge.sum() < band.sum() and (edge <= band).all()


def test_normal_valid_classes_rule(root):
  assert len(pc.PascalContextSplit(root, "train").normal_classes) == 170
  assert set(pc.PascalContextSplit(root, "train").normal_classes) == fx.NORMAL_CLASSES
  context = {"wall": 3, "floor": 5, "unknown": 9, "tvmonitor": 427, "sky": 11}
  nyu = {"floor": 0, "unknown": 1, "lamp": 2, "wall": 3}
  assert pc.normal_valid_classes(nyu, context) == (3, 5, 427)
  assert pc.normal_valid_classes(["wall", "tvmonitor"], context) == (3, 427)


def test_db_info_dir_option(root, tmp_path):
  shutil.move(root / "db_info", tmp_path / "tables")
  split = pc.PascalContextSplit(root, "train", tasks=("normal",), db_info_dir=tmp_path / "tables")
  assert set(split.normal_classes) == fx.NORMAL_CLASSES
  assert set(split.read(0)) == {"image", "normal"}


def test_load_resize_train(root):
  split = pc.PascalContextSplit(root, "train", size=(32, 40), geometry="resize", role="train")
  ex = split.load(1)
  assert ex["image"].shape == (32, 40, 3) and ex["semseg"].shape == (32, 40)
  assert ex["human_parts"].shape == (32, 40) and ex["normal"].shape == (32, 40, 3)
  assert ex["saliency"].shape == (32, 40, 1) and ex["edge"].shape == (32, 40, 1)
  np.testing.assert_array_equal(ex["box"], [0, 0, 32, 40])
  assert ex["box"].dtype == np.int32
  assert (ex["human_parts"] == -1).all()
  norms = np.linalg.norm(ex["normal"], axis=-1)
  assert np.allclose(norms[norms > 0], 1, atol=1e-5) and (norms == 0).any()


def test_load_resize_eval_keeps_native_gt(root):
  split = pc.PascalContextSplit(root, "val", size=(32, 32), geometry="resize", role="eval")
  native, ex = split.read(0), split.load(0)  # val example 0 is k = 3: 20x28.
  h, w = native["image"].shape[:2]
  np.testing.assert_array_equal(ex["box"], [0, 0, h, w])
  assert ex["image"].shape == (32, 32, 3)
  np.testing.assert_array_equal(ex["semseg"][:h, :w], native["semseg"])
  assert (ex["semseg"][h:] == -1).all() and (ex["semseg"][:, w:] == -1).all()
  np.testing.assert_array_equal(ex["edge"][:h, :w], native["edge"])
  assert (ex["edge"][h:] == 255).all()


def test_load_pad(root):
  split = pc.PascalContextSplit(root, "train", size=(30, 30), geometry="pad", role="train")
  native, ex = split.read(0), split.load(0)  # 20x28 centred: top 5, left 1.
  np.testing.assert_array_equal(ex["box"], [5, 1, 20, 28])
  np.testing.assert_array_equal(ex["image"][5:25, 1:29], native["image"])
  assert (ex["image"][:5] == 0).all()
  np.testing.assert_array_equal(ex["human_parts"][5:25, 1:29], native["human_parts"])
  assert (ex["human_parts"][:5] == -1).all() and (ex["saliency"][:, 0] == 255).all()
  assert (ex["normal"][:5] == 0).all()
  with pytest.raises(ValueError, match="does not fit"):
    pc.PascalContextSplit(root, "train", size=(24, 24), geometry="pad").load(0)


def test_task_subset_reads_only_its_files(root):
  for folder in ("human_parts", "sal_distill", "normals_distill", "db_info"):
    shutil.rmtree(root / folder)
  split = pc.PascalContextSplit(root, "train", tasks=("edge", "semseg"), size=(32, 32))
  assert set(split.read(2)) == {"image", "semseg", "edge"}
  assert set(split.load(2)) == {"image", "semseg", "edge", "box"}
  shutil.rmtree(root / "pascal-context")
  assert set(pc.PascalContextSplit(root, "train", tasks=("semseg",)).read(0)) == {"image", "semseg"}
  with pytest.raises(FileNotFoundError, match="sal_distill does not exist"):
    pc.PascalContextSplit(root, "train", tasks=("saliency",))


def test_semseg_falls_back_to_pascal_context(root):
  (root / "semseg" / "VOC12" / f"{TRAIN_IDS[0]}.png").unlink()
  ex = pc.PascalContextSplit(root, "train", tasks=("semseg",)).read(0)
  assert (ex["semseg"] == 7).all()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"tasks": ("semseg", "depth")}, r"unknown: \['depth'\]"),
        ({"tasks": ()}, "non-empty"),
        ({"tasks": ("edge", "edge")}, "distinct"),
        ({"size": (512,)}, "two positive ints"),
        ({"geometry": "crop"}, "geometry='crop'"),
        ({"role": "test"}, "role='test'"),
        ({"normal_interpolation": "linear"}, "normal_interpolation='linear'"),
    ],
)
def test_bad_arguments(root, kwargs, match):
  with pytest.raises(ValueError, match=match):
    pc.PascalContextSplit(root, "train", **kwargs)


def _remove(path):
  shutil.rmtree(path) if path.is_dir() else path.unlink()


def _first(root, folder, ext=""):
  return root / folder / f"{TRAIN_IDS[0]}{ext}"


@pytest.mark.parametrize(
    "corrupt, error, match",
    [
        (lambda r: _remove(r), FileNotFoundError, "data_dir .* does not exist"),
        (
            lambda r: _remove(r / "ImageSets/Context/train.txt"),
            FileNotFoundError,
            r"split file .*train\.txt does not exist",
        ),
        (
            lambda r: (r / "ImageSets/Context/train.txt").write_text("\n\n"),
            ValueError,
            "split is empty",
        ),
        (
            lambda r: (r / "ImageSets/Context/train.txt").write_text("2008_000002\n2008_000002\n"),
            ValueError,
            r"repeats ids \['2008_000002'\]",
        ),
        (lambda r: _remove(r / "JPEGImages"), FileNotFoundError, "JPEGImages does not exist"),
        (
            lambda r: _remove(r / "JPEGImages/2008_000004.jpg"),
            FileNotFoundError,
            r"2008_000004\.jpg does not exist \(1 of the 3 train ids",
        ),
        (
            lambda r: _remove(r / "human_parts/2008_000006.mat"),
            FileNotFoundError,
            r"human_parts/2008_000006\.mat does not exist",
        ),
        (lambda r: _remove(r / "sal_distill"), FileNotFoundError, "sal_distill does not exist"),
        (
            lambda r: _remove(r / "pascal-context"),
            FileNotFoundError,
            "pascal-context/trainval does not exist",
        ),
        (
            lambda r: (_remove(r / "semseg/VOC12"), _remove(r / "semseg/pascal-context")),
            FileNotFoundError,
            "VOC12 and .*pascal-context do not exist",
        ),
        (
            lambda r: _remove(r / "semseg/pascal-context/2008_000004.png"),
            FileNotFoundError,
            r"semseg file .*VOC12/2008_000004\.png does not exist, nor .*pascal-context",
        ),
        (
            lambda r: _remove(r / "db_info/context_classes.json"),
            FileNotFoundError,
            "context_classes.json does not exist .*db_info_dir",
        ),
        (
            lambda r: (r / "db_info/nyu_classes.json").write_text("{not json"),
            ValueError,
            "nyu_classes.json is not readable JSON",
        ),
        (
            lambda r: (r / "db_info/context_classes.json").write_text(json.dumps({"wall": 1})),
            ValueError,
            "has no 'tvmonitor'",
        ),
        (
            lambda r: (r / "db_info/context_classes.json").write_text('{"tvmonitor": "x"}'),
            ValueError,
            "not a name -> int id",
        ),
        (
            lambda r: Image.new("RGB", (28, 20)).save(_first(r, "JPEGImages", ".jpg"), "PNG"),
            ValueError,
            r"2008_000002\.jpg is a PNG, not a JPEG",
        ),
        (
            lambda r: _first(r, "JPEGImages", ".jpg").write_bytes(b"not an image"),
            ValueError,
            "not a readable image",
        ),
        (
            lambda r: Image.new("RGB", (28, 20)).save(_first(r, "semseg/VOC12", ".png")),
            ValueError,
            r"VOC12/2008_000002\.png is a PNG of mode RGB; expected an 8-bit png of mode L or P",
        ),
        (
            lambda r: Image.new("L", (28, 20)).save(_first(r, "normals_distill", ".png")),
            ValueError,
            r"normals_distill/2008_000002\.png is a PNG of mode L",
        ),
        (
            lambda r: Image.new("L", (27, 20)).save(_first(r, "sal_distill", ".png")),
            ValueError,
            r"sal_distill/2008_000002\.png is 20x27 but its image is 20x28",
        ),
        (
            lambda r: scipy.io.savemat(
                _first(r, "pascal-context/trainval", ".mat"),
                {"LabelMap": np.zeros((20, 27), np.uint16)},
            ),
            ValueError,
            r"has LabelMap of shape \(20, 27\) but its image is 20x28",
        ),
        (
            lambda r: scipy.io.savemat(
                _first(r, "pascal-context/trainval", ".mat"),
                {"labels": np.zeros((20, 28), np.uint16)},
            ),
            ValueError,
            r"trainval/2008_000002\.mat has no variable 'LabelMap'",
        ),
        (
            lambda r: _first(r, "human_parts", ".mat").write_bytes(b"garbage"),
            ValueError,
            r"human_parts/2008_000002\.mat is not a readable \.mat",
        ),
    ],
)
def test_bad_layout_errors(root, corrupt, error, match):
  corrupt(root)
  with pytest.raises(error, match=match) as info:
    pc.PascalContextSplit(root, "train")
  assert "ImageSets/Context/train.txt, JPEGImages/{id}.jpg" in str(info.value)


def _semseg_value_30(r):
  path = r / "semseg" / "pascal-context" / "2008_000004.png"
  raw = _png(path).copy()
  raw[3, 3] = 30
  Image.fromarray(raw).save(path)


def _unknown_part(r):
  fx.write_human_parts(r / "human_parts" / "2008_000004.mat", "2008_000004", (26, 18), 0)
  anno = scipy.io.loadmat(r / "human_parts" / "2008_000004.mat")["anno"]
  anno[0][0][1][0][0][3][0][0][0] = np.array(["tail"])
  scipy.io.savemat(r / "human_parts" / "2008_000004.mat", {"anno": anno})


def _flat_anno(r):
  scipy.io.savemat(r / "human_parts" / "2008_000004.mat", {"anno": np.zeros((1, 1))})


def _small_part_mask(r):
  fx.write_human_parts(r / "human_parts" / "2008_000004.mat", "2008_000004", (26, 17), 0)


def _rgb_normals_wrong_size(r):
  Image.new("RGB", (18, 25)).save(r / "normals_distill" / "2008_000004.png")


@pytest.mark.parametrize(
    "corrupt, match",
    [
        (_semseg_value_30, r"pascal-context/2008_000004\.png has semseg values \[30\]"),
        (_unknown_part, r"2008_000004\.mat has person part 'tail'"),
        (_flat_anno, r"2008_000004\.mat is not a PASCAL-Part annotation"),
        (_small_part_mask, r"2008_000004\.mat has a person mask of shape \(26, 17\)"),
        (_rgb_normals_wrong_size, r"normals_distill/2008_000004\.png is 25x18 but .* is 26x18"),
    ],
)
def test_bad_values_raise_on_read(root, corrupt, match):
  corrupt(root)
  split = pc.PascalContextSplit(root, "train")  # Only example 0's headers are checked here.
  split.read(0)
  with pytest.raises(ValueError, match=match):
    split.read(1)


def _snapshot(root):
  return {
      str(p.relative_to(root)): (p.is_dir(), p.stat().st_size, p.stat().st_mtime_ns)
      for p in [root, *root.rglob("*")]
  }


def test_data_dir_unchanged_and_no_parts_file(root):
  before = _snapshot(root)
  for split_name in ("train", "val"):
    for geometry in ("resize", "pad"):
      split = pc.PascalContextSplit(root, split_name, size=(32, 32), geometry=geometry)
      for i in range(split.num_examples):
        split.load(i)
  assert _snapshot(root) == before
  assert not (root / "ImageSets" / "Parts").exists()


def test_load_is_thread_safe(root):
  split = pc.PascalContextSplit(root, "train", size=(32, 32))
  expected = [split.load(i) for i in range(split.num_examples)]
  with concurrent.futures.ThreadPoolExecutor(4) as pool:
    got = list(pool.map(split.load, [i % 3 for i in range(12)]))
  for i, ex in enumerate(got):
    for key, value in expected[i % 3].items():
      np.testing.assert_array_equal(ex[key], value)
