"""The demo (procedural rooms, every task labelled) with MT-CP's Loss Prioritization Scheme.

    python -m mtjax.main --config configs/demo_lps.py --workdir runs/demo_lps

12 epochs of 125 steps: the weights stay 1 for the first K + 1 = 2 epochs, then move at every
epoch's end. Spread β = 2.5 (the paper's text). Compared with equal, uncertainty and DWA
weights by configs/experiments/demo_weighting.py.
"""

from configs import demo


def get_config():
  config = demo.get_config()
  config.weighting.name = "lps"
  config.weighting.fixed_weights = (1.0, 1.0, 1.0)  # The demo's 4x normal weight is 'fixed''s.
  config.weighting.spread = 2.5
  config.weighting.history = 1
  return config
