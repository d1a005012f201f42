"""The demo with region-aware distribution contrast: procedural rooms, onelabel, regions = the
rooms' instances (floor, ceiling, each wall, each object), a narrow a_θ that fits the demo's minutes.

    python -m mtjax.main --config configs/demo_rdc.py --workdir runs/demo_rdc

Compare with the supervised onelabel demo: configs/experiments/demo_rdc.py.
"""

from configs import demo_onelabel


def get_config():
  config = demo_onelabel.get_config()
  config.regularizer.name = "rdc"
  config.regions.source = "instance"
  config.regions.max_regions = 16  # The 16 largest instances; a room has ~10-25.
  config.regions.min_pixels = 4  # Counted at the stride-4 loss resolution (24 x 32 cells).
  config.regions.loss_stride = 4
  # a_θ (8, 16): D = 16. On the 2-core CPU a batch-8 step then takes ~455 ms against ~200 ms
  # supervised (tools/benchmark_train_step.py --regularizer rdc --regions 16 --mapping_filters 8,16
  # --filters 8,16,32,32,32 --batch_size 8 --height 96 --width 128 --label_setting onelabel);
  # R = 32, D = 32 takes ~2,300 ms, 1,500 steps ~1 hour.
  config.regularizer.mapping.filters = (8, 16)
  config.regularizer.temperature = 2.0  # D / 8, as the default's 8 for D = 64.
  return config
