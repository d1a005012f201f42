"""Mixed precision on the demo: configs/demo.py in float32 and with
``config.compute_dtype = "bfloat16"`` (convolutions and activations in bfloat16; parameters,
optimizer state, BatchNorm statistics, softmax, losses and metrics in float32), three seeds each.

    python -m mtjax.experiments --grid configs/experiments/demo_precision.py \
        --workdir runs/experiments/demo_precision
"""

from configs import demo


def get_grid():
  bfloat16 = demo.get_config()
  bfloat16.compute_dtype = "bfloat16"
  return {
      "configs": {"float32": demo.get_config(), "bfloat16": bfloat16},
      "seeds": (0, 1, 2),
      "baseline": "float32",
  }
