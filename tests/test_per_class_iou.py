"""tools/per_class_iou.py: per-class IoU of a trained run from its checkpoint."""

import json

import numpy as np
import pytest

from mtjax import results, train
from tests.test_train import tiny_config
from tools import per_class_iou


def test_per_class_statistics_of_a_hand_made_confusion():
  conf = np.zeros((4, 4))
  conf[0, 0], conf[0, 1], conf[1, 1], conf[2, 2], conf[2, 0] = 6, 2, 4, 5, 3  # Class 3 absent.
  got = per_class_iou.per_class(conf)
  # IoU = tp / (gt + pred − tp): class 0: 6 / (8 + 9 − 6), class 1: 4 / (4 + 6 − 4), class 2: 5 / 8.
  np.testing.assert_allclose(got["iou"][:3], [600 / 11, 400 / 6, 500 / 8])
  assert np.isnan(got["iou"][3])
  np.testing.assert_allclose(got["gt_share"], np.array([8, 4, 8, 0]) / 20 * 100)
  np.testing.assert_allclose(got["pred_share"], np.array([9, 6, 5, 0]) / 20 * 100)
  with pytest.raises(ValueError, match="square"):
    per_class_iou.per_class(np.zeros((2, 3)))
  with pytest.raises(ValueError, match="no valid pixel"):
    per_class_iou.per_class(np.zeros((2, 2)))


def test_scores_a_run_as_its_final_evaluation(data_dir, tmp_path, capsys):
  workdir = str(tmp_path / "run")
  train.train_and_evaluate(tiny_config(data_dir), workdir)
  out = tmp_path / "iou.json"
  assert per_class_iou.main([workdir, "--json", str(out)]) == 0
  (scored,) = json.loads(out.read_text())
  assert scored["step"] == 4 and scored["classes"] is None  # NYUv2 rows carry no names here.
  final = results.final_evaluation(results.read(workdir))
  # The mean over classes present in ground truth or prediction is the run's own mIoU.
  assert np.nanmean(scored["iou"]) == pytest.approx(final["metrics"]["semseg"]["miou"], rel=1e-6)
  assert sum(scored["gt_share"]) == pytest.approx(100.0)
  assert "| 0 |" in capsys.readouterr().out

  assert per_class_iou.main([str(tmp_path / "nothing")]) == 1
  assert "no results.json" in capsys.readouterr().err
