"""Why the onelabel demo's semantic segmentation sometimes stalls near 10 mIoU, and a fix.

    python -m mtjax.experiments --grid configs/experiments/demo_onelabel_stall.py \
        --workdir runs/experiments/demo_released --by_step

(The workdir is the released-vs-paper comparison's: ``onelabel`` is the same config, so its
finished seeds are not rerun.) The demo learns three of the 13 classes, wall, floor and ceiling
(``tools/per_class_iou.py``); a stalled run is one that never learned the ceiling (4.6 % of the
validation pixels): ~16 mIoU with it, ~10 without. Runs learn it between steps ~500 and ~1100 at
the full learning rate; after the first decay (x0.2 at step 975) a run that has not learned it
does not. ``onelabel_late_decay`` moves the decays to steps 1225 and 1375 (epochs 9.8, 11.0),
keeping the anneal before the end.
"""

from configs import demo


def onelabel():
  config = demo.get_config()
  config.label_setting = "onelabel"
  config.log_grad_norms = True
  config.metrics_as_released = True
  return config


def get_grid():
  late = onelabel()
  late.lr_decay_epochs = (9.8, 11.0)
  return {
      "configs": {"onelabel": onelabel(), "onelabel_late_decay": late},
      "seeds": tuple(range(8)),
      "baseline": "onelabel",
  }
