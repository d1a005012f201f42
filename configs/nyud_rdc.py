"""NYUv2 onelabel with region-aware distribution contrast (Li et al., ECCV 2024) on SegNet-MTL:
configs/nyud.py plus L_RC over SAM regions exported ahead of time (tools/export_regions.py writes
the docs/regions.md format; any exporter of that format works).

    python -m mtjax.main --config configs/nyud_rdc.py --workdir runs/nyud_rdc \
        --config.dataset.data_dir=/path/to/nyuv2 --config.regions.dir=/path/to/sam_regions

The paper's loss: Gaussian regions, squared W2, full covariance, λ = 1. a_θ, τ and ε are ours
(configs/default.py, docs/methods.md).
"""

from configs import nyud


def get_config():
  config = nyud.get_config()
  config.regularizer.name = "rdc"
  config.regions.source = "files"
  config.regions.dir = "data/nyuv2_regions/sam"
  config.regions.max_regions = 64
  config.regions.loss_stride = 4  # a_θ's output stride (2 ** len(regularizer.mapping.filters)).
  return config
