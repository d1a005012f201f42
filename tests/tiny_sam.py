"""A tiny, randomly initialised SAM built from segment_anything's own modules, for exporter tests.

``register()`` adds it to ``segment_anything.sam_model_registry`` as ``"vit_tiny"`` so that
``tools/export_regions.py --model_type vit_tiny`` builds it. Run as a script, it registers the
model and then runs the exporter's ``main`` on the remaining arguments; ``--save PATH`` saves a
checkpoint instead. Tests run it as a subprocess: torchvision segfaults when it is imported into
a process that has imported TensorFlow (as pytest workers have), and a subprocess can be killed.

    python tests/tiny_sam.py --save tiny.pth
    python tests/tiny_sam.py --method sam --checkpoint tiny.pth --model_type vit_tiny ...
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

IMAGE_SIZE = 64  # SAM resizes the longest side to this; 4 x 4 patch embeddings.
ROOT = Path(__file__).resolve().parents[1]


def build_tiny_sam(checkpoint=None, *, embed_dim: int = 16, depth: int = 1):
  """A Sam with a 1-block ViT of width ``embed_dim`` on 64-pixel inputs (~40k parameters)."""
  import torch
  from segment_anything.modeling import (
      ImageEncoderViT,
      MaskDecoder,
      PromptEncoder,
      Sam,
      TwoWayTransformer,
  )

  dim, grid = 16, IMAGE_SIZE // 16
  sam = Sam(
      image_encoder=ImageEncoderViT(
          img_size=IMAGE_SIZE,
          patch_size=16,
          embed_dim=embed_dim,
          depth=depth,
          num_heads=2,
          mlp_ratio=2.0,
          out_chans=dim,
          norm_layer=functools.partial(torch.nn.LayerNorm, eps=1e-6),
          use_rel_pos=True,
          window_size=0,
          global_attn_indexes=tuple(range(depth)),
      ),
      prompt_encoder=PromptEncoder(
          embed_dim=dim,
          image_embedding_size=(grid, grid),
          input_image_size=(IMAGE_SIZE, IMAGE_SIZE),
          mask_in_chans=4,
      ),
      mask_decoder=MaskDecoder(
          num_multimask_outputs=3,
          transformer=TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=32, num_heads=2),
          transformer_dim=dim,
          iou_head_depth=2,
          iou_head_hidden_dim=16,
      ),
      pixel_mean=[123.675, 116.28, 103.53],
      pixel_std=[58.395, 57.12, 57.375],
  )
  if checkpoint is not None:
    sam.load_state_dict(torch.load(checkpoint, map_location="cpu", weights_only=True))
  return sam.eval()


def register() -> None:
  from segment_anything import sam_model_registry

  sam_model_registry["vit_tiny"] = build_tiny_sam
  sam_model_registry["vit_tiny_wide"] = functools.partial(build_tiny_sam, embed_dim=32, depth=2)


def save_checkpoint(path: Path, seed: int = 0) -> Path:
  """Saves the state dict of a tiny SAM initialised with ``seed``."""
  import torch

  torch.manual_seed(seed)
  torch.save(build_tiny_sam().state_dict(), path)
  return path


if __name__ == "__main__":
  if sys.argv[1] == "--save":
    save_checkpoint(Path(sys.argv[2]))
    sys.exit(0)
  sys.path.insert(0, str(ROOT / "tools"))
  import export_regions

  register()
  sys.exit(export_regions.main(sys.argv[1:]))
