"""A narrow MT-CP (mtjax/models/mtcp.py: Mask2Former trunk, per-task Swins, Coherence Fusion,
Trace-Back, deep supervision at ½) on the demo's procedural rooms, random init, every task
labelled: the demo (configs/demo.py) with MT-CP's model in place of SegNet-MTL, trained in minutes
on 2 CPU cores.

    python -m mtjax.main --config configs/demo_mtcp.py --workdir runs/demo_mtcp

Everything but the model is the demo's (batch 8, Adam 1e-3 with its two decays, 1,500 steps, the
normal term weighted 4x), so the two compare on the same recipe (configs/experiments/demo_mtcp.py;
docs/results.md). The released recipe (AdamW 5e-5, poly decay, batch 2, a pretrained trunk) is
configs/nyudmt_mtcp.py's; with a random trunk and the demo's minutes it does not train.
"""

import ml_collections

from configs import demo


def get_config():
  config = demo.get_config()
  config.model.name = "mtcp"
  config.model.normalize_input = "none"  # Random init: no ImageNet statistics to match.
  # Every module of the released model, narrow: a Swin of 16 channels (one block per stage,
  # windows of 4 at 96x128), a 32-channel pixel decoder with one deformable layer, 8 queries and
  # 2 decoder layers, and 32-channel per-task Swins (one block per stage) and heads. The
  # Coherence Fusion's affinity is (24 · 32)² per image at the stride-4 map.
  config.model.mtcp = ml_collections.ConfigDict(
      {
          "swin_embed_dim": 16,
          "swin_depths": (1, 1, 1, 1),
          "swin_num_heads": (1, 2, 2, 4),
          "swin_window_size": 4,
          "feature_size": 32,
          "mask_feature_size": 32,
          "encoder_layers": 1,
          "encoder_feedforward_dim": 64,
          "num_attention_heads": 4,
          "hidden_dim": 32,
          "num_queries": 8,
          "decoder_layers": 3,
          "dim_feedforward": 64,
          "num_labels": config.dataset.num_classes,
          "width": 32,
          "decoder_depths": (1, 1, 1),
          "decoder_num_heads": (1, 1, 1),
          "head_upsample": {"semseg": 2, "depth": 2, "normal": 1},
          "deep_supervision_weight": 0.5,
      }
  )
  return config
