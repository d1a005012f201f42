"""The Mask2Former trunk against transformers' Mask2FormerForUniversalSegmentation, end to end
(random weights, a tiny Swin, no download; skipped without the mtcp extra)."""

import jax
import numpy as np
import pytest

from mtjax.models import mask2former, mask2former_import, mask_decoder, pixel_decoder, swin

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SETTINGS = mask2former.Mask2FormerSettings(
    backbone=swin.SwinSettings(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(2, 2, 4, 4), window_size=4),
    pixel_decoder=pixel_decoder.PixelDecoderSettings(
        feature_size=32, mask_feature_size=32, num_attention_heads=4, encoder_layers=2,
        encoder_feedforward_dim=64,
    ),
    decoder=mask_decoder.MaskDecoderSettings(
        hidden_dim=32, num_queries=5, num_attention_heads=4, decoder_layers=4, dim_feedforward=64,
        mask_feature_size=32,
    ),
    num_labels=7,
)  # fmt: skip


def _reference():
  s = SETTINGS
  backbone = transformers.SwinConfig(
      embed_dim=s.backbone.embed_dim,
      depths=list(s.backbone.depths),
      num_heads=list(s.backbone.num_heads),
      window_size=s.backbone.window_size,
      image_size=64,
      out_features=["stage1", "stage2", "stage3", "stage4"],
  )
  config = transformers.Mask2FormerConfig(
      backbone_config=backbone,
      feature_size=s.pixel_decoder.feature_size,
      mask_feature_size=s.pixel_decoder.mask_feature_size,
      encoder_layers=s.pixel_decoder.encoder_layers,
      encoder_feedforward_dim=s.pixel_decoder.encoder_feedforward_dim,
      hidden_dim=s.decoder.hidden_dim,
      num_queries=s.decoder.num_queries,
      num_attention_heads=s.decoder.num_attention_heads,
      decoder_layers=s.decoder.decoder_layers,
      dim_feedforward=s.decoder.dim_feedforward,
      num_labels=s.num_labels,
  )
  torch.manual_seed(0)
  model = transformers.Mask2FormerForUniversalSegmentation(config).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.copy_(torch.randn_like(p) * 0.2)
  return model


def test_trunk_equals_transformers_mask2former_and_mt_cps_shared_map():
  model = _reference()
  images = np.random.default_rng(0).normal(size=(2, 72, 88, 3)).astype(np.float32)
  with torch.no_grad():
    out = model(torch.from_numpy(images.transpose(0, 3, 1, 2)), output_hidden_states=True)
  variables = mask2former_import.convert_state_dict(
      {k: v.numpy() for k, v in model.state_dict().items()}, SETTINGS
  )
  got = jax.jit(lambda v, x: mask2former.Mask2FormerTrunk(SETTINGS).apply(v, x, class_logits=True))(
      variables, images
  )

  def close(ours, theirs):
    theirs = np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4 * np.abs(theirs).max(), rtol=0)

  features = out.pixel_decoder_last_hidden_state.numpy().transpose(0, 2, 3, 1)
  close(got["mask_features"], features)
  close(got["masks"][-1], out.masks_queries_logits.numpy())
  close(got["classes"][-1], out.class_queries_logits.numpy())
  # MT-CP's shared map, as its forward computes it (models_nyud_CL.py:182).
  shared = torch.einsum(
      "bnhw, bdhw -> bdhw", out.masks_queries_logits, out.pixel_decoder_last_hidden_state
  )
  close(
      mask2former.query_weighted_features(got["mask_features"], got["masks"][-1]),
      shared.numpy().transpose(0, 2, 3, 1),
  )
  count = sum(x.size for x in jax.tree.leaves(variables))
  unused = sum(p.numel() for n, p in model.named_parameters() if "encoder.swin.layernorm" in n)
  assert count == sum(p.numel() for p in model.parameters()) - unused


def test_a_checkpoint_without_the_class_predictor_is_named():
  model = _reference()
  state = {
      k: v.numpy() for k, v in model.state_dict().items() if not k.startswith("class_predictor")
  }
  with pytest.raises(ValueError, match=r"2 parameters missing \['class_predictor/bias'"):
    mask2former_import.convert_state_dict(state, SETTINGS)
