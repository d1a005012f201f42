"""Partial-label settings: generated (full / onelabel / randomlabels), files, converter."""

import importlib.util
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
