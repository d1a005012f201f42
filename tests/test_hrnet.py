"""HRNet-W18 in Flax against timm's PyTorch HRNet (random weights, no download), the weight import
and the multi-task network."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtjax.models import FEATURES, features, hrnet, hrnet_import, registry

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT.parent / "shared" / "data" / "nyuv2_mini"

needs_timm = pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in ("timm", "torch", "torchvision")),
    reason='timm / torch not installed (pip install -e ".[sam,hrnet]")',
)

# timm imports torchvision, which crashes a process that has imported TensorFlow (pytest workers
# have): the PyTorch side runs in a subprocess and hands back NumPy arrays.
_TORCH_SCRIPT = r"""
import sys, numpy as np, torch, timm
variant, image_path, out = sys.argv[1:4]
torch.manual_seed(0)
model = timm.create_model(variant, pretrained=False, features_only=True, feature_location="",
                          out_indices=(1, 2, 3, 4))
for m in model.modules():  # Non-trivial BatchNorm statistics and affine parameters.
  if isinstance(m, torch.nn.BatchNorm2d):
    m.running_mean.uniform_(-0.5, 0.5); m.running_var.uniform_(0.5, 2.0)
    m.weight.data.uniform_(0.5, 1.5); m.bias.data.uniform_(-0.2, 0.2)
model.eval()
image = np.load(image_path)[None]
with torch.no_grad():
  feats = model(torch.from_numpy(image).permute(0, 3, 1, 2).float())
arrays = {f"feature_{i}": f.permute(0, 2, 3, 1).numpy() for i, f in enumerate(feats)}
arrays.update({"param:" + k: v.numpy() for k, v in model.state_dict().items()})
arrays["num_params"] = np.array(sum(p.numel() for p in model.parameters()))
np.savez(out, **arrays)
"""


def _torch_reference(tmp_path, variant, image):
  np.save(tmp_path / "image.npy", image)
  out = tmp_path / f"{variant}.npz"
  proc = subprocess.run(
      [sys.executable, "-c", _TORCH_SCRIPT, variant, str(tmp_path / "image.npy"), str(out)],
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert proc.returncode == 0, proc.stderr[-3000:]
  data = np.load(out)
  state = {k[len("param:") :]: data[k] for k in data.files if k.startswith("param:")}
  return [data[f"feature_{i}"] for i in range(4)], state, int(data["num_params"])


@needs_timm
@pytest.mark.parametrize("variant", ["hrnet_w18", "hrnet_w18_small_v2"])
def test_backbone_matches_timm_on_a_real_frame(tmp_path, variant):
  if MINI.is_dir():
    image = np.load(MINI / "train" / "image" / "0.npy").astype(np.float32)  # 288x384
  else:
    image = np.random.default_rng(0).random((288, 384, 3), np.float32)
  expected, state, num_params = _torch_reference(tmp_path, variant, image)
  variables = hrnet_import.convert_state_dict(state, variant)
  assert sum(x.size for x in jax.tree.leaves(variables["params"])) == num_params
  got = hrnet.HRNetBackbone(variant).apply(variables, jnp.asarray(image)[None], train=False)
  for i, (g, e) in enumerate(zip(got, expected)):
    assert g.shape == e.shape, (i, g.shape, e.shape)
    scale = np.abs(e).max()
    assert np.abs(np.asarray(g) - e).max() <= 1e-4 * scale, (
        i,
        np.abs(np.asarray(g) - e).max(),
        scale,
    )


def test_converter_names_what_does_not_map():
  with pytest.raises(ValueError, match="variables missing"):
    hrnet_import.convert_state_dict({"conv1.weight": np.zeros((64, 3, 3, 3))}, "hrnet_w18")
  with pytest.raises(ValueError, match=r"keys that do not map \['layer9.0.conv1.weight'\]"):
    hrnet_import.convert_state_dict({"layer9.0.conv1.weight": np.zeros((1, 1, 1, 1))}, "hrnet_w18")
  with pytest.raises(ValueError, match=r"conv1.weight \(3, 3, 3, 32\) vs \(3, 3, 3, 64\)"):
    hrnet_import.convert_state_dict({"conv1.weight": np.zeros((32, 3, 3, 3))}, "hrnet_w18")


def test_conversion_round_trip_and_classification_head_skipped(tmp_path):
  expected = jax.tree.map(
      lambda s: np.random.default_rng(0).random(s.shape).astype(np.float32),
      hrnet_import.expected_variables("hrnet_w18_small_v2"),
  )
  flat = jax.tree_util.tree_flatten_with_path(expected)[0]
  state = {"classifier.weight": np.zeros((1000, 2048)), "bn1.num_batches_tracked": np.array(3)}
  for path, value in flat:
    keys = [p.key for p in path]
    collection, module, leaf = keys
    name = {
        "kernel": "weight",
        "scale": "weight",
        "bias": "bias",
        "mean": "running_mean",
        "var": "running_var",
    }[leaf]
    tensor = value.transpose(3, 2, 0, 1) if leaf == "kernel" else value
    state[f"{module.replace('_', '.')}.{name}"] = tensor  # The converter maps dots back.
  variables = hrnet_import.convert_state_dict(state, "hrnet_w18_small_v2")
  for a, b in zip(jax.tree.leaves(expected), jax.tree.leaves(variables)):
    np.testing.assert_array_equal(a, b)
  hrnet_import.save(variables, tmp_path / "w.msgpack")
  loaded = hrnet_import.load(tmp_path / "w.msgpack", "hrnet_w18_small_v2")
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(loaded)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="does not hold hrnet_w18 backbone variables"):
    hrnet_import.load(tmp_path / "w.msgpack", "hrnet_w18")


def test_multitask_network_outputs_and_features():
  model = hrnet.HRNetMTL(num_classes=5, variant="hrnet_w18_small_v2")
  x = jax.random.uniform(jax.random.key(0), (1, 64, 96, 3))
  variables = jax.jit(lambda: model.init(jax.random.key(1), x, train=False))()
  out, mutated = model.apply(variables, x, train=False, mutable=[FEATURES])
  assert out["semseg"].shape == (1, 64, 96, 5) and out["depth"].shape == (1, 64, 96, 1)
  np.testing.assert_allclose(jnp.exp(out["semseg"]).sum(-1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(jnp.linalg.norm(out["normal"], axis=-1), 1.0, rtol=1e-5)
  feats = features(mutated)
  assert feats["bottleneck"].shape == (1, 2, 3, 144)
  assert feats["decoder"].shape == (1, 16, 24, 270)
  assert feats["head_depth"].shape == (1, 16, 24, 270)


def test_released_backbone_options_momentum_and_bilinear_fuse():
  """RDC's released HRNet: BatchNorm momentum 0.01 (PyTorch's convention) in the backbone, 0.1
  in the heads; fuse layers upsample bilinearly (half-pixel) instead of nearest."""
  x = jax.random.uniform(jax.random.key(0), (2, 64, 64, 3))
  base = hrnet.HRNetMTL(num_classes=5, variant="hrnet_w18_small_v2")
  released = hrnet.HRNetMTL(
      num_classes=5, variant="hrnet_w18_small_v2", bn_momentum=0.01, fuse_upsampling="bilinear"
  )
  variables = jax.jit(lambda: base.init(jax.random.key(1), x, train=False))()
  _, upd = released.apply(variables, x, train=True, mutable=["batch_stats"])
  # Running mean after one step from 0: momentum · batch mean of the first BN's input.
  x_in = (x - jnp.asarray(hrnet.IMAGENET_MEAN)) / jnp.asarray(hrnet.IMAGENET_STD)
  conv1 = jax.lax.conv_general_dilated(
      x_in,
      variables["params"]["backbone"]["conv1"]["kernel"],
      (2, 2),
      ((1, 1), (1, 1)),
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )
  np.testing.assert_allclose(
      upd["batch_stats"]["backbone"]["bn1"]["mean"],
      0.01 * conv1.mean((0, 1, 2)),
      rtol=1e-4,
      atol=1e-7,
  )
  head = upd["batch_stats"]["head_depth_bn"]["mean"]
  _, upd_base = base.apply(variables, x, train=True, mutable=["batch_stats"])
  assert not np.allclose(head, 0.0)
  # Same params, other fuse upsampling: other outputs.
  out_base = base.apply(variables, x, train=False)
  out_released = released.apply(variables, x, train=False)
  assert out_released["depth"].shape == out_base["depth"].shape
  assert not np.allclose(out_released["depth"], out_base["depth"])
  np.testing.assert_allclose(
      upd_base["batch_stats"]["backbone"]["bn1"]["mean"],
      0.1 * conv1.mean((0, 1, 2)),
      rtol=1e-4,
      atol=1e-7,
  )
  with pytest.raises(ValueError, match="fuse_upsampling"):
    hrnet.HRNetMTL(variant="hrnet_w18_small_v2", fuse_upsampling="cubic").init(
        jax.random.key(0), x, train=False
    )


@pytest.mark.slow
def test_training_with_a_pretrained_backbone(data_dir, tmp_path):
  from mtjax import optimizer, sharding, train
  from tests.test_train import tiny_config

  config = tiny_config(data_dir, num_train_steps=2, eval_every_steps=2, checkpoint_every_steps=2)
  config.model.name = "hrnet_w18_small_v2"
  backbone = jax.tree.map(
      lambda s: np.random.default_rng(1).normal(size=s.shape).astype(np.float32) * 0.01,
      hrnet_import.expected_variables("hrnet_w18_small_v2"),
  )
  backbone["batch_stats"] = jax.tree.map(np.abs, backbone["batch_stats"])
  hrnet_import.save(backbone, tmp_path / "w.msgpack")
  config.model.pretrained = str(tmp_path / "w.msgpack")
  model = registry.create_model(config)
  assert model.normalize_input  # "auto": ImageNet statistics with a pretrained backbone.
  mesh = sharding.create_mesh()
  tx = optimizer.create_optimizer(config, 2)
  state = train.create_train_state(model, tx, jax.random.key(0), (32, 64), mesh)
  params, batch_stats = registry.with_pretrained(config, state.params, state.batch_stats)
  for a, b in zip(jax.tree.leaves(backbone["params"]), jax.tree.leaves(params["backbone"])):
    np.testing.assert_array_equal(a, b)
  for a, b in zip(
      jax.tree.leaves(backbone["batch_stats"]), jax.tree.leaves(batch_stats["backbone"])
  ):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(
      params["head_depth_out"]["kernel"], state.params["head_depth_out"]["kernel"]
  )
  final = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert int(final.step) == 2
  config.model.name = "segnet_mtl"
  with pytest.raises(ValueError, match="has no pretrained backbone"):
    registry.with_pretrained(config, state.params, state.batch_stats)
