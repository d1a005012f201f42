"""MT-CP (Fontana et al., WACV 2025) on PASCAL-Context: its model (`mtjax/models/mtcp.py`) on
semseg, human parts and saliency at 512x512 (the released `models/models_pascal_CL.py` heads:
semseg and human parts upsampled 4x, saliency not), LPS with the released PASCAL spread 1.6.

    python -m mtjax.main --config configs/pascal_context_mtcp.py --workdir runs/pascal_mtcp \
        --config.dataset.data_dir=/path/to/PASCAL_MT

The released recipe and what is not yet as released: as configs/nyudmt_mtcp.py says.
"""

from configs import nyudmt_mtcp, pascal_context


def get_config():
  tasks = ("semseg", "human_parts", "saliency")
  config = nyudmt_mtcp.released_recipe(pascal_context.get_config(), tasks, spread=1.6)
  config.model.mtcp = nyudmt_mtcp.get_config().model.mtcp
  config.model.mtcp.head_upsample = {"semseg": 4, "human_parts": 4, "saliency": 1}
  return config
