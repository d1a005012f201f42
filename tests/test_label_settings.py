"""Partial-label settings: generated (full / onelabel / randomlabels), files, converter."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from mtjax.data.label_settings import resolve_label_mask
from tests.data_fixtures import SHARED_DATA

TASKS = ("semseg", "depth", "normal")
SETTINGS_DIR = SHARED_DATA / "mtpsl_label_settings"


def _resolve(setting, n=10, tasks=TASKS, seed=0, dataset_tasks=TASKS):
  return resolve_label_mask(
      setting, num_examples=n, dataset_tasks=dataset_tasks, tasks=tasks, seed=seed
  )


def _converter():
  path = Path(__file__).resolve().parents[1] / "tools" / "convert_mtpsl_label_settings.py"
  spec = importlib.util.spec_from_file_location("convert_mtpsl_label_settings", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_full():
  mask = _resolve("full", n=4, tasks=("normal", "semseg"))
  assert mask.dtype == np.float32 and mask.shape == (4, 2) and (mask == 1).all()


@pytest.mark.parametrize("n", [795, 796, 797, 7])
def test_onelabel_balanced_one_task_per_row(n):
  mask = _resolve("onelabel", n=n, seed=3)
  assert mask.dtype == np.float32 and mask.shape == (n, 3)
  assert (mask.sum(1) == 1).all()
  counts = mask.sum(0)
  assert counts.max() - counts.min() <= 1 and counts.sum() == n


def test_onelabel_is_seeded_and_random():
  np.testing.assert_array_equal(
      _resolve("onelabel", n=60, seed=1), _resolve("onelabel", n=60, seed=1)
  )
  assert not np.array_equal(_resolve("onelabel", n=60, seed=1), _resolve("onelabel", n=60, seed=2))
  # Not a fixed cyclic pattern: the assignment is a random permutation.
  assert not np.array_equal(_resolve("onelabel", n=60).argmax(1), np.arange(60) % 3)


def test_task_subset_selects_columns_of_the_same_split():
  both = _resolve("randomlabels", n=50, seed=4)
  np.testing.assert_array_equal(
      _resolve("randomlabels", n=50, seed=4, tasks=("normal", "semseg")), both[:, [2, 0]]
  )


def test_randomlabels_one_to_t_minus_one_per_row():
  mask = _resolve("randomlabels", n=2000, seed=5)
  per_row = mask.sum(1)
  assert per_row.min() == 1 and per_row.max() == 2
  # k ~ U{1, 2} and each task equally likely, as in MTPSL's file (S 392, D 408, N 385 of 795).
  assert abs(per_row.mean() - 1.5) < 0.05
  np.testing.assert_allclose(mask.mean(0), 0.5, atol=0.04)
  four = _resolve(
      "randomlabels", n=500, tasks=("a", "b", "c", "d"), dataset_tasks=("a", "b", "c", "d")
  )
  assert set(four.sum(1)) == {1.0, 2.0, 3.0}
  with pytest.raises(ValueError, match="needs >= 2 dataset tasks"):
    _resolve("randomlabels", tasks=("semseg",), dataset_tasks=("semseg",))


def test_npy_file_and_errors(tmp_path):
  mask = (np.random.default_rng(0).random((6, 3)) < 0.5).astype(np.float32)
  np.save(tmp_path / "m.npy", mask)
  np.testing.assert_array_equal(_resolve(tmp_path / "m.npy", n=6, tasks=("depth",)), mask[:, [1]])
  np.testing.assert_array_equal(_resolve(str(tmp_path / "m.npy"), n=6), mask)

  with pytest.raises(
      ValueError, match=r"has 6 rows but the training split has 795 examples"
  ) as info:
    _resolve(tmp_path / "m.npy", n=795)
  assert "m.npy" in str(info.value)
  with pytest.raises(FileNotFoundError, match="missing.npy does not exist"):
    _resolve(tmp_path / "missing.npy", n=6)
  with pytest.raises(ValueError, match="convert_mtpsl_label_settings.py"):
    _resolve(tmp_path / "onelabel.pth", n=6)
  with pytest.raises(ValueError, match="neither one of"):
    _resolve("onelabels", n=6)
  for name, bad in [
      ("ndim", mask[:, 0]),
      ("k", mask[:, :2]),
      ("values", mask * 2),
      ("nan", mask + np.nan),
  ]:
    np.save(tmp_path / f"{name}.npy", bad)
    with pytest.raises(ValueError, match=f"{name}.npy has"):
      _resolve(tmp_path / f"{name}.npy", n=6)


def test_bad_tasks():
  with pytest.raises(ValueError, match="unknown: \\['edge'\\]"):
    _resolve("full", tasks=("semseg", "edge"))
  with pytest.raises(ValueError, match="non-empty"):
    _resolve("full", tasks=())
  with pytest.raises(ValueError, match="num_examples"):
    _resolve("full", n=0)


def test_published_mtpsl_splits():
  path = SETTINGS_DIR / "nyuv2_onelabel.npy"
  if not path.is_file():
    pytest.skip(f"published MTPSL splits not found at {SETTINGS_DIR} (../shared/data is absent)")
  onelabel = _resolve(path, n=795)
  assert onelabel.shape == (795, 3) and (onelabel.sum(1) == 1).all()
  np.testing.assert_array_equal(onelabel.sum(0), [265, 265, 265])
  random = _resolve(SETTINGS_DIR / "nyuv2_randomlabels.npy", n=795)
  np.testing.assert_array_equal(random.sum(0), [392, 408, 385])
  assert set(random.sum(1)) == {1.0, 2.0}
  with pytest.raises(ValueError, match="has 795 rows but the training split has 6 examples"):
    _resolve(path, n=6)


def test_converter_refuses_overwrite_and_needs_torch(tmp_path, monkeypatch, capsys):
  convert = _converter()
  (tmp_path / "in.pth").write_bytes(b"")
  (tmp_path / "out.npy").write_bytes(b"")
  with pytest.raises(SystemExit):
    convert.main([str(tmp_path / "in.pth"), str(tmp_path / "out.npy")])
  assert "--force" in capsys.readouterr().err
  monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
  with pytest.raises(SystemExit):
    convert.main([str(tmp_path / "in.pth"), str(tmp_path / "out.npy"), "--force"])
  assert "pip install torch" in capsys.readouterr().err


def test_converter_matches_published_npy(tmp_path):
  pytest.importorskip("torch", reason="PyTorch (optional extra) is needed to read .pth files")
  source = SETTINGS_DIR / "nyuv2_onelabel.pth"
  if not source.is_file():
    pytest.skip(f"published MTPSL splits not found at {SETTINGS_DIR} (../shared/data is absent)")
  assert _converter().main([str(source), str(tmp_path / "onelabel.npy")]) == 0
  converted = np.load(tmp_path / "onelabel.npy")
  assert converted.dtype == np.float32
  np.testing.assert_array_equal(converted, np.load(SETTINGS_DIR / "nyuv2_onelabel.npy"))


# PASCAL splits keyed by image id (MTPSL .npy / its .json copy / DiffusionMTL .pth).
PASCAL_TASKS = ("semseg", "human_parts", "saliency", "normal", "edge")
# Six ids, written to the ids file out of sorted order: row i of the output is ids[i].
IDS = ["2008_000003", "2008_000001", "2009_000010", "2008_000002", "2010_000005", "2011_000001"]
# MTPSL keys; every id labelled for >= 1 task, one id for all five.
SPLIT = {
    "human_parts": ["2008_000001", "2011_000001"],
    "edge": ["2009_000010", "2011_000001"],
    "semseg": ["2008_000003", "2011_000001"],
    "normals": ["2008_000002", "2011_000001"],
    "sal": ["2010_000005", "2008_000003", "2011_000001"],
}
# The expected mask: rows IDS, columns PASCAL_TASKS (normals -> normal, sal -> saliency).
EXPECTED = np.float32(
    [
        [1, 0, 1, 0, 0],
        [0, 1, 0, 0, 0],
        [0, 0, 0, 0, 1],
        [0, 0, 0, 1, 0],
        [0, 0, 1, 0, 0],
        [1, 1, 1, 1, 1],
    ]
)


def _write_ids(path, ids=IDS):
  path.write_text("\n".join(ids) + "\n\n")  # A trailing blank line is skipped.
  return path


def _write_split(path, split=SPLIT):
  """Writes ``split`` in the format of ``path``'s suffix (.npy as MTPSL, .json as ../shared)."""
  if path.suffix == ".npy":
    # As MTPSL: np.save of a dict (a pickled 0-d object array) with numpy.str_ ids.
    split = {k: [np.str_(i) for i in v] if isinstance(v, list) else v for k, v in split.items()}
    np.save(path, split, allow_pickle=True)
  else:
    path.write_text(json.dumps(split))
  return path


def _write_dmtl(path, split=SPLIT, key=np.str_):
  """Writes ``split`` as DiffusionMTL's new_*.pth: id -> [semseg, human_parts, sal, normals,
  edge]."""
  torch = pytest.importorskip("torch", reason="PyTorch (optional extra) is needed for .pth files")
  order = ("semseg", "human_parts", "sal", "normals", "edge")
  rows = {}
  for t, task in enumerate(order):
    for i in split[task]:
      rows.setdefault(key(i), [0] * len(order))[t] = 1
  torch.save(rows, path)
  return path


@pytest.mark.parametrize("suffix", [".npy", ".json"])
def test_converter_pascal_split(tmp_path, suffix, monkeypatch):
  monkeypatch.setitem(sys.modules, "torch", None)  # .npy / .json need no PyTorch.
  source = _write_split(tmp_path / f"onelabel{suffix}")
  ids = _write_ids(tmp_path / "train.txt")
  mask = _converter().convert(source, tmp_path / "out.npy", ids_path=ids)
  np.testing.assert_array_equal(mask, EXPECTED)
  written = np.load(tmp_path / "out.npy")
  assert written.dtype == np.float32
  np.testing.assert_array_equal(written, EXPECTED)
  np.testing.assert_array_equal(
      resolve_label_mask(
          tmp_path / "out.npy",
          num_examples=6,
          dataset_tasks=PASCAL_TASKS,
          tasks=("normal", "saliency"),
          seed=0,
      ),
      EXPECTED[:, [3, 2]],
  )


@pytest.mark.parametrize("key", [np.str_, str])
def test_converter_diffusionmtl_pth(tmp_path, key):
  source = _write_dmtl(tmp_path / "new_onelabel.pth", key=key)
  ids = _write_ids(tmp_path / "train.txt")
  convert = _converter()
  mask = convert.convert(source, tmp_path / "out.npy", ids_path=ids)
  np.testing.assert_array_equal(mask, EXPECTED)
  # The labels_weights format still needs no --ids and refuses one.
  import torch

  torch.save({"labels_weights": torch.tensor(EXPECTED)}, tmp_path / "mtpsl.pth")
  np.testing.assert_array_equal(
      convert.convert(tmp_path / "mtpsl.pth", tmp_path / "w.npy"), EXPECTED
  )
  with pytest.raises(ValueError, match="--ids is only for PASCAL splits"):
    convert.convert(tmp_path / "mtpsl.pth", tmp_path / "w.npy", force=True, ids_path=ids)


def test_converter_diffusionmtl_bad_rows(tmp_path):
  torch = pytest.importorskip("torch", reason="PyTorch (optional extra) is needed for .pth files")
  ids = _write_ids(tmp_path / "train.txt")
  convert = _converter()
  for name, data, match in [
      ("short", {i: [1, 0, 0, 0] for i in IDS}, r"maps '2008_000003' to \[1, 0, 0, 0\]"),
      ("values", {i: [2, 0, 0, 0, 0] for i in IDS}, "expected .* 5 values 0/1"),
      ("other", {"weights": torch.ones(6, 5)}, "labels_weights"),
      ("list", [1, 2, 3], "has no 2-D tensor 'labels_weights' and is no DiffusionMTL dict"),
  ]:
    torch.save(data, tmp_path / f"{name}.pth")
    with pytest.raises(ValueError, match=match):
      convert.convert(tmp_path / f"{name}.pth", tmp_path / "out.npy", ids_path=ids)
  assert not (tmp_path / "out.npy").exists()


def _drop(split, task, image_id):
  return {k: [i for i in v if not (k == task and i == image_id)] for k, v in split.items()}


@pytest.mark.parametrize(
    "split, ids, match",
    [
        (
            {**SPLIT, "edge": [*SPLIT["edge"], "2012_000001", "2012_000002"]},
            IDS,
            r"2 ids of the split are not in the --ids list of 6 ids \(e\.g\. \['2012_000001'",
        ),
        (
            _drop(SPLIT, "edge", "2009_000010"),
            IDS,
            r"1 of the 6 --ids are labelled for no task \(e\.g\. \['2009_000010'\]\)",
        ),
        (
            SPLIT,
            [*IDS, "2012_000007", "2012_000008"],
            r"2 of the 8 --ids are labelled for no task",
        ),
        ({**SPLIT, "depth": []}, IDS, r"has task keys .*; expected exactly"),
        ({k: v for k, v in SPLIT.items() if k != "sal"}, IDS, "has task keys .*; expected exactly"),
        (
            {k: v for k, v in {**SPLIT, "saliency": SPLIT["sal"]}.items() if k != "sal"},
            IDS,
            "has task keys",
        ),
        (
            {**SPLIT, "edge": [*SPLIT["edge"], "2009_000010"]},
            IDS,
            r"lists 1 ids of task 'edge' more than once",
        ),
        ({**SPLIT, "edge": "2009_000010"}, IDS, r"task 'edge' holds a str; expected a list"),
        (SPLIT, [*IDS, IDS[2]], r"lists 1 ids more than once \(e\.g\. \['2009_000010'\]\)"),
        (SPLIT, [], "holds no ids"),
    ],
)
@pytest.mark.parametrize("suffix", [".npy", ".json"])
def test_converter_pascal_errors(tmp_path, split, ids, match, suffix):
  source = _write_split(tmp_path / f"split{suffix}", split)
  with pytest.raises(ValueError, match=match) as info:
    _converter().convert(source, tmp_path / "out.npy", ids_path=_write_ids(tmp_path / "ids", ids))
  assert f"split{suffix}" in str(info.value) or "--ids" in str(info.value)
  assert not (tmp_path / "out.npy").exists()


def test_converter_pascal_cli_errors(tmp_path, capsys):
  convert = _converter()
  source = _write_split(tmp_path / "onelabel.npy")
  ids = _write_ids(tmp_path / "train.txt")
  for argv, message in [
      ([source, tmp_path / "out.npy"], "pass --ids PATH"),
      ([source, tmp_path / "out.npy", "--ids", tmp_path / "no.txt"], "no.txt does not exist"),
      ([source, source, "--ids", ids, "--force"], "is the input file"),
      ([source, tmp_path / "out.txt", "--ids", ids], "must end in .npy"),
      ([tmp_path / "split.yaml", tmp_path / "out.npy"], "does not exist"),
  ]:
    with pytest.raises(SystemExit):
      convert.main([str(a) for a in argv])
    assert message in capsys.readouterr().err
  (tmp_path / "split.txt").write_text("{}")
  with pytest.raises(SystemExit):
    convert.main([str(tmp_path / "split.txt"), str(tmp_path / "out.npy")])
  assert "is neither .pth" in capsys.readouterr().err
  (tmp_path / "bad.json").write_text("{not json")
  with pytest.raises(SystemExit):
    convert.main([str(tmp_path / "bad.json"), str(tmp_path / "out.npy"), "--ids", str(ids)])
  assert "bad.json is not a readable split" in capsys.readouterr().err
  assert not (tmp_path / "out.npy").exists()

  assert convert.main([str(source), str(tmp_path / "out.npy"), "--ids", str(ids)]) == 0
  assert "'saliency': 3" in capsys.readouterr().out
  (tmp_path / "out.npy").write_bytes(b"keep")
  with pytest.raises(SystemExit):
    convert.main([str(source), str(tmp_path / "out.npy"), "--ids", str(ids)])
  assert "--force" in capsys.readouterr().err
  assert (tmp_path / "out.npy").read_bytes() == b"keep"
  assert convert.main([str(source), str(tmp_path / "out.npy"), "--ids", str(ids), "--force"]) == 0
  np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), EXPECTED)


class _Touch:
  """Unpickling it would create ``path`` (what a tampered split could do instead)."""

  def __init__(self, path):
    self.path = path

  def __reduce__(self):
    return (Path.touch, (self.path,))


def test_converter_npy_refuses_code_in_the_pickle(tmp_path):
  marker = tmp_path / "was_run"
  split = {**SPLIT, "edge": [*SPLIT["edge"], _Touch(marker)]}
  np.save(tmp_path / "evil.npy", np.array(split, dtype=object), allow_pickle=True)
  with pytest.raises(ValueError, match="not a readable split .*is not allowed"):
    _converter().convert(
        tmp_path / "evil.npy", tmp_path / "out.npy", ids_path=_write_ids(tmp_path / "ids")
    )
  assert not marker.exists()
  np.save(tmp_path / "numeric.npy", np.ones((6, 5), np.float32))
  with pytest.raises(ValueError, match="not one pickled object"):
    _converter().convert(
        tmp_path / "numeric.npy", tmp_path / "out.npy", ids_path=_write_ids(tmp_path / "ids")
    )


@pytest.mark.parametrize("name", ["onelabel", "randomlabels"])
def test_converter_published_pascal_splits(tmp_path, name):
  source = SETTINGS_DIR / f"pascal_{name}.npy"
  if not source.is_file():
    pytest.skip(f"published MTPSL splits not found at {SETTINGS_DIR} (../shared/data is absent)")
  # The split's union, sorted, stands in for ImageSets/Context/train.txt (the same 4998 ids).
  split = json.loads((SETTINGS_DIR / f"pascal_{name}.json").read_text())
  ids = _write_ids(tmp_path / "train.txt", sorted(set().union(*split.values())))
  convert = _converter()
  assert convert.main([str(source), str(tmp_path / "m.npy"), "--ids", str(ids)]) == 0
  mask = resolve_label_mask(
      tmp_path / "m.npy", num_examples=4998, dataset_tasks=PASCAL_TASKS, tasks=PASCAL_TASKS, seed=0
  )
  # DATA_AND_METRICS.md: human_parts / edge / semseg / normals / sal, in PASCAL_TASKS order here.
  if name == "onelabel":
    np.testing.assert_array_equal(mask.sum(0), [1000, 999, 1000, 1000, 999])
    assert (mask.sum(1) == 1).all()
  else:
    np.testing.assert_array_equal(mask.sum(0), [2450, 847, 2445, 2480, 2557])
    np.testing.assert_array_equal(np.bincount(mask.sum(1).astype(int)), [0, 1538, 1529, 1541, 390])
  json_mask = convert.convert(
      SETTINGS_DIR / f"pascal_{name}.json", tmp_path / "j.npy", ids_path=ids
  )
  np.testing.assert_array_equal(json_mask, mask)


def test_published_cityscapes_onelabel():
  path = SETTINGS_DIR / "cityscapes_onelabel.npy"
  if not path.is_file():
    pytest.skip(f"published MTPSL splits not found at {SETTINGS_DIR} (../shared/data is absent)")
  mask = resolve_label_mask(
      path, num_examples=2975, dataset_tasks=("semseg", "depth"), tasks=("semseg", "depth"), seed=0
  )
  assert mask.shape == (2975, 2) and (mask.sum(1) == 1).all()
  np.testing.assert_array_equal(mask.sum(0), [1487, 1488])
  np.testing.assert_array_equal(
      resolve_label_mask(
          path, num_examples=2975, dataset_tasks=("semseg", "depth"), tasks=("depth",), seed=0
      ),
      mask[:, [1]],
  )
