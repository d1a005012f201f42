"""MT-CP's model against SegNet-MTL on the demo, three seeds, the same recipe.

    python -m mtjax.experiments --grid configs/experiments/demo_mtcp.py \
        --workdir runs/experiments/demo_mtcp

``demo``: configs/demo.py (SegNet-MTL, 8-32 channels); ``demo_mtcp``: configs/demo_mtcp.py (a
narrow MT-CP, random init). Everything else (data, batch, optimiser, schedule, task weights,
steps) is the demo's.
"""

from configs import demo, demo_mtcp


def get_grid():
  return {
      "configs": {"demo": demo.get_config(), "demo_mtcp": demo_mtcp.get_config()},
      "seeds": (0, 1, 2),
      "baseline": "demo",
  }
