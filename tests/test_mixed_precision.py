"""config.compute_dtype = "bfloat16": params, optimizer state and BatchNorm statistics stay float32,
the loss is close to the float32 one."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtjax import optimizer, sharding, train
from mtjax.models import registry
from tests.test_train import tiny_config
from tools.bench import synthetic_batch


def test_bfloat16_compute_keeps_float32_state_and_a_close_loss(data_dir, model_name="segnet_mtl"):
  losses, states = {}, {}
  for dtype in ("float32", "bfloat16"):
    config = tiny_config(data_dir)
    config.model.name = model_name
    config.compute_dtype = dtype
    mesh = sharding.create_mesh()
    model = registry.create_model(config)
    tx = optimizer.create_optimizer(config, 10)
    state = train.create_train_state(model, tx, jax.random.key(0), (32, 64), mesh)
    batch = sharding.global_batch(mesh, synthetic_batch(2, 32, 64, 3))
    state, metrics = train.make_train_step(config, model, tx, mesh)(state, batch)
    losses[dtype], states[dtype] = float(metrics["loss"]), state
  for leaf in jax.tree.leaves(
      (states["bfloat16"].params, states["bfloat16"].opt_state, states["bfloat16"].batch_stats)
  ):
    if jnp.issubdtype(leaf.dtype, jnp.floating):
      assert leaf.dtype == jnp.float32
  assert np.isfinite(losses["bfloat16"])
  np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=2e-2)
  with pytest.raises(ValueError, match="config.compute_dtype='float16'"):
    config.compute_dtype = "float16"
    registry.create_model(config)


def test_hrnet_in_bfloat16_keeps_float32_params_and_outputs():
  from mtjax.models import hrnet

  x = jax.random.uniform(jax.random.key(0), (1, 32, 64, 3))
  f32 = hrnet.HRNetMTL(num_classes=5, variant="hrnet_w18_small_v2")
  bf16 = hrnet.HRNetMTL(num_classes=5, variant="hrnet_w18_small_v2", dtype=jnp.bfloat16)
  variables = jax.jit(lambda: f32.init(jax.random.key(1), x, train=False))()
  a = jax.jit(lambda v: f32.apply(v, x, train=False))(variables)
  b = jax.jit(lambda v: bf16.apply(v, x, train=False))(variables)
  for k in a:
    assert b[k].dtype == jnp.float32
    np.testing.assert_allclose(b[k], a[k], atol=0.1 * float(jnp.abs(a[k]).max()))


def test_benchmark_times_both_compute_dtypes_side_by_side(monkeypatch, capsys):
  from tools import benchmark_train_step

  argv = "--compute_dtype both --batch_size 2 --height 32 --width 64 --filters 8,8 --steps 1"
  monkeypatch.setattr("sys.argv", ["benchmark_train_step.py", *argv.split()])
  benchmark_train_step.main()
  out = capsys.readouterr().out
  assert "step 0 float32:" in out and "step 0 bfloat16:" in out
  line = out.strip().splitlines()[-1]
  f32, bf16, ratio = (float(v) for v in re.findall(r"([\d.]+)(?: ms|x float32)", line))
  np.testing.assert_allclose(ratio, f32 / bf16, rtol=0.02)
