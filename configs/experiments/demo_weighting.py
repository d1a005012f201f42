"""Task weightings on the demo, every task labelled (issue 11's comparison; MT-CP Table 4's rows).

    python -m mtjax.experiments --grid configs/experiments/demo_weighting.py \
        --workdir runs/experiments/demo_weighting [--seeds=0,1,2] [--only=lps]

Everything but config.weighting is the demo's (configs/demo.py; LPS: configs/demo_lps.py, whose
spread lps_no_log shares); Δm against equal weights.
"""

from configs import demo, demo_lps


def get_grid():
  configs = {"equal": demo.get_config()}
  for name in ("uncertainty", "dwa", "log_smoothing", "lps_no_log"):
    configs[name] = demo_lps.get_config() if name == "lps_no_log" else demo.get_config()
    configs[name].weighting.name = name
  configs["lps"] = demo_lps.get_config()
  return {"configs": configs, "seeds": (0, 1, 2), "baseline": "equal"}
