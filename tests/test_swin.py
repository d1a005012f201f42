"""mtjax.models.swin against transformers' Swin, random weights, no download (torch and
transformers from the optional extras; skipped without them)."""

import jax
import numpy as np
import pytest

from mtjax.models import swin, swin_import

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SETTINGS = swin.SwinSettings(embed_dim=16, depths=(2, 2, 2), num_heads=(2, 4, 4), window_size=4)


def _reference(settings, **kwargs):
  config = transformers.SwinConfig(
      embed_dim=settings.embed_dim,
      depths=list(settings.depths),
      num_heads=list(settings.num_heads),
      window_size=settings.window_size,
      image_size=64,
      out_features=[f"stage{i + 1}" for i in range(len(settings.depths))],
      **kwargs,
  )
  torch.manual_seed(0)
  model = transformers.SwinBackbone(config).eval()
  with torch.no_grad():  # Random everything, the relative position tables included (init: 0).
    for p in model.parameters():
      p.copy_(torch.randn_like(p) * 0.2)
  return model


@pytest.mark.parametrize(
    "hw", [(64, 64), (36, 52)]
)  # 52 / 4 = 13: padding to the window, odd merges.
def test_backbone_equals_transformers_swin_backbone(hw):
  model = _reference(SETTINGS)
  rng = np.random.default_rng(0)
  images = rng.normal(size=(2, *hw, 3)).astype(np.float32)
  with torch.no_grad():
    expected = model(torch.from_numpy(images.transpose(0, 3, 1, 2))).feature_maps
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  variables = swin_import.convert_state_dict(state, SETTINGS, prefix="")
  got = jax.jit(swin.SwinBackbone(SETTINGS).apply)(variables, images)
  assert len(got) == len(expected) == 3
  for ours, theirs in zip(got, expected):
    theirs = theirs.numpy().transpose(0, 2, 3, 1)
    assert ours.shape == theirs.shape
    scale = float(np.abs(theirs).max())
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4 * scale, rtol=0)


def test_parameter_count_equals_the_reference_and_bad_dicts_are_named():
  model = _reference(SETTINGS)
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  variables = swin_import.convert_state_dict(state, SETTINGS, prefix="")
  ours = sum(x.size for x in jax.tree.leaves(variables))
  unused = model.swin.layernorm  # SwinModel's final norm: the backbone never applies it.
  assert ours == sum(p.numel() for p in model.parameters()) - sum(
      p.numel() for p in unused.parameters()
  )
  del state["swin.encoder.layers.1.blocks.0.mlp.fc1.weight"]
  state["swin.encoder.layers.0.blocks.0.mystery.weight"] = np.zeros(3)
  with pytest.raises(ValueError, match=r"1 keys of no parameter.*mystery.*1 parameters missing"):
    swin_import.convert_state_dict(state, SETTINGS, prefix="")


def test_legacy_checkpoint_names_convert_like_todays():
  model = _reference(SETTINGS)
  state = {k: v.numpy() for k, v in model.state_dict().items()}
  renames = {
      "attention.q_proj.": "attention.self.query.",
      "attention.k_proj.": "attention.self.key.",
      "attention.v_proj.": "attention.self.value.",
      "attention.o_proj.": "attention.output.dense.",
      "attention.relative_position_bias.relative_position_bias_table": (
          "attention.self.relative_position_bias_table"
      ),
      "mlp.fc1.": "intermediate.dense.",
      "mlp.fc2.": "output.dense.",
  }
  legacy = {}
  for key, value in state.items():
    for new, old in renames.items():
      key = key.replace(new, old)
    legacy[key] = value
  a = swin_import.convert_state_dict(state, SETTINGS, prefix="")
  b = swin_import.convert_state_dict(legacy, SETTINGS, prefix="")
  jax.tree.map(np.testing.assert_array_equal, a, b)


def test_shifted_window_mask_and_relative_index_match_their_definitions():
  index = swin.relative_position_index(3)
  assert index.shape == (9, 9) and index.min() == 0 and index.max() == 24
  assert index[4, 4] == 12  # Centre with itself: offset (0, 0), the table's middle row.
  mask = swin.shifted_window_mask(8, 8, 4, 2)
  assert mask.shape == (4, 16, 16)
  np.testing.assert_array_equal(mask[0], 0)  # The top-left window holds one region.
  assert (mask[3] == swin.MASK_VALUE).any() and (np.diag(mask[3]) == 0).all()


def test_swin_without_patch_embedding_equals_transformers_encoder_on_a_feature_map():
  """MT-CP's per-task decoders: a Swin run on the trunk's map as tokens (depths (1, 2, 1), no
  patch embedding, stage norms), against transformers' SwinEncoder called on the same tokens."""
  settings = swin.SwinSettings(embed_dim=32, depths=(1, 2, 1), num_heads=(2, 2, 2), window_size=7)
  model = _reference(settings)
  rng = np.random.default_rng(2)
  tokens = rng.normal(size=(2, 18, 23, 32)).astype(np.float32)  # A stride-4 map of 72x92.
  with torch.no_grad():
    out = model.swin.encoder(
        torch.from_numpy(tokens.reshape(2, -1, 32)),
        (18, 23),
        always_partition=True,
        output_hidden_states=True,
        output_hidden_states_before_downsampling=True,
    )
    expected = [
        model.hidden_states_norms[f"stage{i + 1}"](h.permute(0, 2, 3, 1)).numpy()
        for i, h in enumerate(out.reshaped_hidden_states[1:])
    ]
  state = {k: v.numpy() for k, v in model.state_dict().items() if "embeddings" not in k}
  flax_model = swin.SwinBackbone(settings, patch_embedding=False)
  expected_params = jax.eval_shape(flax_model.init, jax.random.key(0), tokens)["params"]
  assert "patch_embeddings" not in expected_params and "embeddings_norm" not in expected_params
  params = swin_import.convert_state_dict(state, settings, prefix="", patch_embedding=False)
  got = jax.jit(flax_model.apply)(params, tokens)
  for ours, theirs in zip(got, expected, strict=True):
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4 * np.abs(theirs).max(), rtol=0)
  with pytest.raises(ValueError, match="takes 32 channels, got 3"):
    flax_model.init(jax.random.key(0), tokens[..., :3])
