"""Task weightings on the demo, every task labelled (MT-CP Table 4's rows).

    python -m mtjax.experiments --grid configs/experiments/demo_weighting.py \
        --workdir runs/experiments/demo_weighting [--seeds=0,1,2] [--only=lps]

Everything but config.weighting is the demo's (configs/demo.py, whose 4x normal weight is
replaced by each weighting; LPS: configs/demo_lps.py, whose
spread lps_no_log shares); Δm against equal weights.
"""

from configs import demo, demo_lps


def _weighted(name):
  config = demo_lps.get_config() if name in ("lps", "lps_no_log") else demo.get_config()
  config.weighting.name = name
  # The demo weights its normal term 4x ('fixed'); the compared weightings start from equal terms.
  config.weighting.fixed_weights = (1.0, 1.0, 1.0)
  return config


def get_grid():
  names = ("equal", "uncertainty", "dwa", "log_smoothing", "lps_no_log", "lps")
  return {"configs": {n: _weighted(n) for n in names}, "seeds": (0, 1, 2), "baseline": "equal"}
