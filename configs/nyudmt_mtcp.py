"""MT-CP (Fontana et al., WACV 2025) on NYUD-MT: its model (`mtjax/models/mtcp.py`: the
Mask2Former trunk of facebook/mask2former-swin-small-ade-semantic, per-task Swin decoders,
Coherence Fusion, Trace-Back, deep supervision at ½) on semseg, depth and normals at 480x640 (edges
off, as the released `configs/nyud/MT_simple_final.yml`), LPS with the released NYUD spread 7.5.

    python -m mtjax.main --config configs/nyudmt_mtcp.py --workdir runs/nyudmt_mtcp \
        --config.dataset.data_dir=/path/to/NYUD_MT

The released recipe: AdamW 5e-5 with weight decay 1e-4 on every parameter, polynomial decay
0.9 per epoch over 100 epochs, batch 2 (`MT_simple_final.yml`, `utils/common_config.py`). LPS as
released: its rule, the weights computed and not applied (`--config.weighting.as_released=false
--config.weighting.apply_weights=true`: the paper's). Not yet as released (see docs/methods.md,
"MT-CP's model"): the trunk's pretrained weights (convert a local Hugging Face checkpoint with
mtjax.models.mask2former_import).
"""

import ml_collections

from configs import nyudmt


def released_recipe(config, tasks, spread):
  """``config`` with MT-CP's released training recipe for ``tasks`` (3 of them) and LPS spread."""
  config.tasks = tasks
  config.weighting.fixed_weights = (1.0, 1.0, 1.0)
  config.weighting.name = "lps"
  # LPS as released: its rule (raw losses, K = 1), the weights computed and not applied.
  config.weighting.as_released, config.weighting.apply_weights = True, False
  config.weighting.spread = spread
  config.optimizer, config.learning_rate, config.weight_decay = "adamw", 5e-5, 1e-4
  config.lr_schedule, config.lr_poly_power, config.num_epochs = "poly", 0.9, 100.0
  config.batch_size = 2
  config.model.name = "mtcp"
  config.model.normalize_input = "imagenet"
  return config


def get_config():
  config = released_recipe(nyudmt.get_config(), ("semseg", "depth", "normal"), spread=7.5)
  # The released normal head and loss: the output never normalised, its squared error
  # (NormalsLoss(), losses/loss_functions.py); the metrics normalise it (docs/metrics.md).
  config.task_options.normal.head, config.task_options.normal.loss = "raw", "mse"
  # The released model's sizes (mtjax.models.mtcp.settings_from_config lists every field).
  config.model.mtcp = ml_collections.ConfigDict(
      {
          "swin_embed_dim": 96,
          "swin_depths": (2, 2, 18, 2),
          "swin_num_heads": (3, 6, 12, 24),
          "swin_window_size": 7,
          "feature_size": 256,
          "mask_feature_size": 256,
          "encoder_layers": 6,
          "encoder_feedforward_dim": 1024,
          "num_attention_heads": 8,
          "hidden_dim": 256,
          "num_queries": 100,
          "decoder_layers": 10,
          "dim_feedforward": 2048,
          "num_labels": 150,
          "width": 256,
          "decoder_depths": (1, 2, 1),
          "decoder_num_heads": (2, 2, 2),
          "head_upsample": {"semseg": 2, "depth": 2, "normal": 1},
          "deep_supervision_weight": 0.5,
      }
  )
  return config
