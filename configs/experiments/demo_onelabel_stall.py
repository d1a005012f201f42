"""Why the onelabel demo's semantic segmentation sometimes stalls near 10 mIoU, and the fix in
configs/demo_onelabel.py (docs/reproducing.md, "The onelabel demo baseline").

    python -m mtjax.experiments --grid configs/experiments/demo_onelabel_stall.py \
        --workdir runs/experiments/demo_released

(The workdir is the released-vs-paper comparison's: ``onelabel`` is the same config there, so
its finished seeds are shared.) The demo learns three of the 13 classes, wall, floor and ceiling
(``tools/per_class_iou.py``); a stalled run is one that never learned the ceiling (4.6 % of the
validation pixels): ~16 mIoU with it, ~10 without. ``onelabel_decay975`` decays the learning rate
as the fully labelled demo, x0.2 at steps 975 and 1,350; ``onelabel`` (configs/demo_onelabel.py)
at 1,225 and 1,375, giving the slow seeds, which learn the ceiling between steps 750 and 1,125,
more steps at the full rate.
"""

from configs import demo, demo_onelabel


def _logged(config):
  config.log_grad_norms = True
  config.metrics_as_released = True
  return config


def get_grid():
  decay975 = demo.get_config()
  decay975.label_setting = "onelabel"
  return {
      "configs": {
          "onelabel_decay975": _logged(decay975),
          "onelabel": _logged(demo_onelabel.get_config()),
      },
      "seeds": tuple(range(8)),
      "baseline": "onelabel_decay975",
  }
