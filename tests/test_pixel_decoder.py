"""Mask2Former's pixel decoder and multi-scale deformable attention against transformers' and
PyTorch's (random weights, no download; skipped without the mtcp extra)."""

import jax
import numpy as np
import pytest

from mtjax.models import deformable_attention, pixel_decoder, pixel_decoder_import

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
modeling = pytest.importorskip("transformers.models.mask2former.modeling_mask2former")

SETTINGS = pixel_decoder.PixelDecoderSettings(
    feature_size=64,
    mask_feature_size=64,
    num_attention_heads=4,
    encoder_layers=2,
    encoder_feedforward_dim=128,
)
CHANNELS = (16, 32, 64, 128)


def test_bilinear_sample_equals_grid_sample_inside_on_the_border_and_outside():
  rng = np.random.default_rng(0)
  h, w = 5, 7
  values = rng.normal(size=(3, h * w, 4)).astype(np.float32)
  locations = rng.uniform(-0.3, 1.3, size=(3, 50, 2)).astype(np.float32)  # Some fully outside.
  got = deformable_attention.bilinear_sample(values, locations, h, w)
  image = torch.from_numpy(values.reshape(3, h, w, 4).transpose(0, 3, 1, 2))
  grid = torch.from_numpy(2 * locations - 1)[:, :, None]  # [N, K, 1, 2]
  expected = torch.nn.functional.grid_sample(
      image, grid, mode="bilinear", padding_mode="zeros", align_corners=False
  )[..., 0].permute(0, 2, 1)
  np.testing.assert_allclose(np.asarray(got), expected.numpy(), atol=1e-5)


@pytest.mark.parametrize("hw", [(64, 96), (72, 40)])
def test_pixel_decoder_equals_transformers(hw):
  config = transformers.Mask2FormerConfig(
      feature_size=SETTINGS.feature_size,
      mask_feature_size=SETTINGS.mask_feature_size,
      num_attention_heads=SETTINGS.num_attention_heads,
      encoder_layers=SETTINGS.encoder_layers,
      encoder_feedforward_dim=SETTINGS.encoder_feedforward_dim,
  )
  torch.manual_seed(0)
  model = modeling.Mask2FormerPixelDecoder(config, feature_channels=list(CHANNELS)).eval()
  with torch.no_grad():
    for p in model.parameters():
      p.copy_(torch.randn_like(p) * 0.1)
  rng = np.random.default_rng(1)
  features = [
      rng.normal(size=(2, -(-hw[0] // s), -(-hw[1] // s), c)).astype(np.float32)
      for s, c in zip((4, 8, 16, 32), CHANNELS)
  ]
  with torch.no_grad():
    out = model([torch.from_numpy(f.transpose(0, 3, 1, 2)) for f in features])
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  variables = pixel_decoder_import.convert_state_dict(
      state, SETTINGS, [f.shape[1:] for f in features]
  )
  mask_features, multi_scale = jax.jit(pixel_decoder.PixelDecoder(SETTINGS).apply)(
      variables, features
  )
  pairs = [(mask_features, out.mask_features)] + list(zip(multi_scale, out.multi_scale_features))
  for ours, theirs in pairs:
    theirs = theirs.numpy().transpose(0, 2, 3, 1)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4 * np.abs(theirs).max(), rtol=0)
  count = sum(x.size for x in jax.tree.leaves(variables))
  assert count == sum(p.numel() for p in model.parameters())


def test_sine_position_embedding_equals_transformers():
  embed = modeling.Mask2FormerSinePositionEmbedding(num_position_features=32, normalize=True)
  expected = embed((1, 8, 5, 7), "cpu", torch.float32)[0].permute(1, 2, 0).numpy()
  np.testing.assert_allclose(pixel_decoder.sine_position_embedding(5, 7, 64), expected, atol=1e-5)
