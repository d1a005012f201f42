"""The demo with region-aware distribution contrast: procedural rooms, onelabel, regions = the
rooms' instances (floor, ceiling, each wall, each object), a narrow a_θ that fits the demo's minutes.

    python -m mtjax.main --config configs/demo_rdc.py --workdir runs/demo_rdc

Compare with the supervised onelabel demo: configs/experiments/demo_rdc.py.
"""

from configs import demo


def get_config():
  config = demo.get_config()
  config.label_setting = "onelabel"
  config.regularizer.name = "rdc"
  config.regions.source = "instance"
  config.regions.max_regions = 32
  config.regions.min_pixels = 4  # Counted at the stride-4 loss resolution (24 x 32 cells).
  config.regions.loss_stride = 4
  # D = 32 instead of 64: a_θ runs on 2 maps per (example, task pair) at 96 x 128.
  config.regularizer.mapping.filters = (16, 32)
  config.regularizer.temperature = 4.0  # D / 8, as the default's 8 for D = 64.
  return config
