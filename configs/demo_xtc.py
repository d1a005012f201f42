"""The demo with MTPSL's cross-task consistency: procedural rooms, onelabel, a mapping network as
narrow as the demo's SegNet (its stages end at the bottleneck's 32 channels, stride 32), one FiLM
conv per stage.

    python -m mtjax.main --config configs/demo_xtc.py --workdir runs/demo_xtc
"""

from configs import demo_onelabel


def get_config():
  config = demo_onelabel.get_config()
  config.regularizer.name = "xtc"
  config.regularizer.weight = 2.0  # MTPSL's NYUv2 weight.
  config.regularizer.mapping.filters = tuple(config.model.filters)
  config.regularizer.mapping.convs_per_stage = (1,) * len(config.model.filters)
  return config
