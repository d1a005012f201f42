"""Mask2Former's masked-attention decoder against transformers' (random weights, no download;
skipped without the mtcp extra)."""

import jax
import numpy as np
import pytest

from mtjax.models import mask_decoder, mask_decoder_import

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
modeling = pytest.importorskip("transformers.models.mask2former.modeling_mask2former")

SETTINGS = mask_decoder.MaskDecoderSettings(
    hidden_dim=32,
    num_queries=6,
    num_attention_heads=4,
    decoder_layers=5,  # 4 layers: every level, and the first again.
    dim_feedforward=64,
    mask_feature_size=32,
)


def _reference(scale=0.3):
  config = transformers.Mask2FormerConfig(
      hidden_dim=SETTINGS.hidden_dim,
      num_queries=SETTINGS.num_queries,
      num_attention_heads=SETTINGS.num_attention_heads,
      decoder_layers=SETTINGS.decoder_layers,
      dim_feedforward=SETTINGS.dim_feedforward,
      mask_feature_size=SETTINGS.mask_feature_size,
      feature_size=SETTINGS.hidden_dim,
  )
  torch.manual_seed(0)
  model = modeling.Mask2FormerTransformerModule(SETTINGS.hidden_dim, config).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.copy_(torch.randn_like(p) * scale)
  return model


def _inputs(hw, seed=1):
  rng = np.random.default_rng(seed)
  maps = [
      rng.normal(size=(2, -(-hw[0] // s), -(-hw[1] // s), SETTINGS.hidden_dim)).astype(np.float32)
      for s in (32, 16, 8)
  ]
  mask_features = rng.normal(
      size=(2, -(-hw[0] // 4), -(-hw[1] // 4), SETTINGS.mask_feature_size)
  ).astype(np.float32)
  return maps, mask_features


@pytest.mark.parametrize("hw", [(64, 96), (72, 40)])
def test_mask_decoder_equals_transformers(hw):
  model = _reference()
  maps, mask_features = _inputs(hw)
  with torch.no_grad():
    out = model(
        [torch.from_numpy(m.transpose(0, 3, 1, 2)) for m in maps],
        torch.from_numpy(mask_features.transpose(0, 3, 1, 2)),
    )
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  variables = mask_decoder_import.convert_state_dict(state, SETTINGS, SETTINGS.hidden_dim)
  queries, intermediate, masks = jax.jit(mask_decoder.MaskDecoder(SETTINGS).apply)(
      variables, maps, mask_features
  )
  expected_masks = np.stack([m.numpy() for m in out.masks_queries_logits])
  assert (
      masks.shape
      == expected_masks.shape
      == (SETTINGS.decoder_layers, 2, 6, *mask_features.shape[1:3])
  )
  scale = np.abs(expected_masks).max()
  np.testing.assert_allclose(np.asarray(masks), expected_masks, atol=1e-4 * scale, rtol=0)
  expected_intermediate = np.stack(
      [h.numpy().transpose(1, 0, 2) for h in out.intermediate_hidden_states]
  )
  np.testing.assert_allclose(
      np.asarray(intermediate),
      expected_intermediate,
      atol=1e-4 * np.abs(expected_intermediate).max(),
  )
  np.testing.assert_allclose(
      np.asarray(queries),
      out.last_hidden_state.numpy(),
      atol=1e-4 * np.abs(out.last_hidden_state.numpy()).max(),
  )
  count = sum(x.size for x in jax.tree.leaves(variables))
  assert count == sum(p.numel() for p in model.parameters())


def test_masked_attention_is_masked_where_the_previous_mask_is_below_one_half():
  """The property that makes it masked attention: changing the memory where every query's mask
  says "outside" leaves the first layer's output unchanged; changing it inside does not."""
  model = _reference()
  maps, mask_features = _inputs((64, 96))
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  variables = mask_decoder_import.convert_state_dict(state, SETTINGS, SETTINGS.hidden_dim)
  apply = jax.jit(mask_decoder.MaskDecoder(SETTINGS).apply)
  _, intermediate, masks = apply(variables, maps, mask_features)
  coarse = jax.image.resize(
      masks[0], (*masks.shape[1:3], *maps[0].shape[1:3]), "linear", antialias=False
  )
  outside = np.asarray(jax.nn.sigmoid(coarse) < 0.5).all(axis=1)  # [B, h, w]: every query's "no".
  assert outside.any() and (~outside).any()
  for region, changes in ((outside, False), (~outside, True)):
    changed = [m.copy() for m in maps]
    changed[0][region] += 5.0
    _, after, _ = apply(variables, changed, mask_features)
    assert np.allclose(after[1], intermediate[1], atol=1e-5) != changes
