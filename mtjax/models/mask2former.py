"""Mask2Former (Cheng et al., CVPR 2022) as MT-CP's shared trunk: a Swin backbone, the pixel
decoder and the masked-attention decoder, equal to ``transformers``' ``Mask2FormerModel`` in eval
mode (tested with random weights: ``tests/test_mask2former.py``).

MT-CP (Fontana et al., WACV 2025; Klodivio355/MT-CP ``models/models_nyud_CL.py``) loads
``facebook/mask2former-swin-small-ade-semantic`` (Swin-S, 100 queries, 256 channels, 150 ADE
classes) and reads two of its outputs, the pixel decoder's stride-4 mask features F [B, H/4, W/4,
256] and the last layer's mask logits M [B, Q, H/4, W/4], into one map for its task decoders:
``einsum("bnhw, bdhw -> bdhw", M, F)``, that is F · Σ_q M_q (``query_weighted_features``). It also
computes the class logits (``class_predictor``) and their softmax, which nothing then reads; the
class predictor is built here so that a released checkpoint's parameters all have a place, and is
applied only when asked.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from mtjax.models import mask_decoder, pixel_decoder, swin

__all__ = ["Mask2FormerSettings", "Mask2FormerTrunk", "query_weighted_features"]


@dataclasses.dataclass(frozen=True)
class Mask2FormerSettings:
  """The trunk's sizes; the defaults are ``facebook/mask2former-swin-small-ade-semantic``'s."""

  backbone: swin.SwinSettings = swin.SwinSettings()
  pixel_decoder: pixel_decoder.PixelDecoderSettings = pixel_decoder.PixelDecoderSettings()
  decoder: mask_decoder.MaskDecoderSettings = mask_decoder.MaskDecoderSettings()
  num_labels: int = 150  # The class predictor's classes (+ 1 "no object").


def query_weighted_features(mask_features: jax.Array, mask_logits: jax.Array) -> jax.Array:
  """MT-CP's shared representation: the mask features scaled at every pixel by the sum over
  queries of the last layer's mask logits (``einsum("bnhw, bdhw -> bdhw")`` of the released code).

  Args:
    mask_features: float [B, H, W, D]. mask_logits: float [B, Q, H, W].

  Returns:
    float [B, H, W, D].
  """
  return mask_features * jnp.sum(mask_logits, axis=1)[..., None]


class Mask2FormerTrunk(nn.Module):
  """Swin -> pixel decoder -> masked-attention decoder.

  Attributes:
    settings: the sizes (``Mask2FormerSettings``).
  """

  settings: Mask2FormerSettings = Mask2FormerSettings()

  @nn.compact
  def __call__(self, images, *, class_logits: bool = False) -> dict[str, jax.Array]:
    """The trunk's outputs.

    Args:
      images: float [B, H, W, 3], normalised as the checkpoint expects (ImageNet mean / std).
      class_logits: also apply the class predictor to every layer's queries.

    Returns:
      {"backbone": the Swin's maps (finest first), "mask_features": [B, H/4, W/4, D],
      "multi_scale_features": the pixel decoder's 3 maps (coarsest first), "queries": [B, Q, C]
      (the last layer's, before the final norm), "intermediate": [L + 1, B, Q, C], "masks": [L + 1,
      B, Q, H/4, W/4] mask logits (``masks[-1]`` is Mask2FormerForUniversalSegmentation's
      ``masks_queries_logits``), and with ``class_logits`` "classes": [L + 1, B, Q, num_labels + 1]}.
    """
    s = self.settings
    features = swin.SwinBackbone(s.backbone, name="backbone")(images)
    mask_features, multi_scale = pixel_decoder.PixelDecoder(s.pixel_decoder, name="pixel_decoder")(
        features
    )
    queries, intermediate, masks = mask_decoder.MaskDecoder(s.decoder, name="transformer_module")(
        multi_scale, mask_features
    )
    out = {
        "backbone": features,
        "mask_features": mask_features,
        "multi_scale_features": multi_scale,
        "queries": queries,
        "intermediate": intermediate,
        "masks": masks,
    }
    predictor = nn.Dense(s.num_labels + 1, name="class_predictor")
    if class_logits or self.is_initializing():
      out["classes"] = predictor(intermediate)
    return out
