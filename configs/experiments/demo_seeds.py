"""The demo (configs/demo.py) over three seeds: the spread every comparison on it is measured against.

    python -m mtjax.experiments --grid configs/experiments/demo_seeds.py \
        --workdir runs/experiments/demo_seeds --by_step

A seed changes the initialisation, the drawn label split, the example order and the augmentation.
"""

from configs import demo


def get_grid():
  return {"configs": {"demo": demo.get_config()}, "seeds": (0, 1, 2), "baseline": "demo"}
