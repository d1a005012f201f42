"""What makes the demo's normals robust across seeds (issue 7): the demo against variants of it.

    python -m mtjax.experiments --grid configs/experiments/demo_normals.py \
        --workdir runs/experiments/demo_normals --by_step [--only=normal_x4]

The demo's normals are bimodal over seeds (README, "What the demo learns"): in the failing seeds
the decoder's 8 shared channels carry no linear trace of n_x (a wall facing left or right), and
the normal head's output norm |p| is ~4 at the end, so the (1 − cos) loss of the normalised
output sends gradients ~4x smaller into the shared layers than an output of unit norm would, while
depth's L1 sends full-size ones at every pixel. ``normal_x4`` weights the normal term 4x.
"""

from configs import demo


def get_grid():
  configs = {"demo": demo.get_config()}
  c = demo.get_config()
  c.weighting.name = "fixed"
  c.weighting.fixed_weights = (1.0, 1.0, 4.0)  # semseg, depth, normal
  configs["normal_x4"] = c
  return {"configs": configs, "seeds": (0, 1, 2), "baseline": "demo"}
