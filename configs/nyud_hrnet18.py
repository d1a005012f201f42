"""NYUv2 on HRNet-W18 with an ImageNet-pretrained backbone, supervised (partial labels as
configs/nyud.py): the backbone of the RDC paper's tables (Li et al., ECCV 2024).

    python tools/convert_torch_weights.py hrnetv2_w18_imagenet_pretrained.pth data/hrnet_w18.msgpack
    python -m mtjax.main --config configs/nyud_hrnet18.py --workdir runs/nyud_hrnet18 \
        --config.dataset.data_dir=/path/to/nyuv2 --config.model.pretrained=data/hrnet_w18.msgpack

The paper gives 20 epochs; batch size, optimiser and schedule are not given: ours are MTPSL's
(Adam 1e-4, batch 2), halved after 10 epochs.
"""

from configs import nyud


def get_config():
  config = nyud.get_config()
  config.model.name = "hrnet_w18"
  config.model.pretrained = "data/hrnet_w18.msgpack"
  config.num_epochs = 20.0
  config.lr_decay_epochs = (10.0,)
  return config
