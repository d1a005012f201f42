"""Data parallelism: one train step gives the same loss and update on 1 device and on 8 CPU devices."""

import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from mtjax import sharding

_SCRIPT = textwrap.dedent("""
    import jax, numpy as np
    from configs import default
    from mtjax import optimizer, sharding, train
    from mtjax.models import registry
    from jax.sharding import Mesh

    assert jax.device_count() == 8, jax.devices()
    config = default.get_config()
    config.model.filters = (8, 8, 16, 16, 16)
    config.batch_size = 8
    model, tx = registry.create_model(config), optimizer.create_optimizer(config, steps_per_epoch=397)
    rng = np.random.default_rng(0)
    h, w, b = 32, 64, 8
    labels = rng.integers(-1, 13, (b, h, w)).astype(np.int32)
    normal = rng.normal(size=(b, h, w, 3)).astype(np.float32)
    batch = {
        "image": rng.random((b, h, w, 3), dtype=np.float32),
        "semseg": labels,
        "depth": rng.uniform(0, 5, (b, h, w, 1)).astype(np.float32),
        "normal": normal / np.linalg.norm(normal, axis=-1, keepdims=True),
        "label_mask": (rng.random((b, 3)) < 0.5).astype(np.float32),
        "valid": np.ones((b,), np.float32),
    }
    results = []
    for devices in (jax.devices()[:1], jax.devices()):
      mesh = Mesh(np.array(devices), (sharding.DATA_AXIS,))
      state = train.create_train_state(model, tx, jax.random.key(0), (h, w), mesh)
      step = train.make_train_step(config, model, tx, mesh)
      state, metrics = step(state, sharding.global_batch(mesh, batch))
      assert len(metrics["loss"].sharding.device_set) == len(devices)
      losses, batch_stats = [jax.device_get(metrics)], jax.device_get(state.batch_stats)
      # The second loss sees the first update. (Parameters are not compared: Adam's first step is
      # lr * sign(g), and biases feeding BatchNorm have g = 0 up to round-off, so their sign is noise
      # that changes no output.)
      state, metrics = step(state, sharding.global_batch(mesh, batch))
      losses.append(jax.device_get(metrics))
      results.append((losses, batch_stats))
    (m1, s1), (m8, s8) = results
    # Step 1 (forward, global BatchNorm statistics, loss) agrees to round-off. Step 2 follows one
    # update, and round-off in step 1 flips near-tied max-pool argmaxes (SegNet's unpooling routes
    # the gradient through them) and the sign of gradients that are zero up to round-off (Adam's
    # first update is lr * sign(g)); the next loss then moves by ~1e-4 relative, by how much
    # depending on the machine's reduction order (AVX2 vs AVX-512). A sharding error (per-device
    # BatchNorm, gradients not all-reduced) moves it by far more.
    for step_1, step_8, rtol in zip(m1, m8, (1e-5, 2e-3)):
      for k in step_1:
        np.testing.assert_allclose(step_8[k], step_1[k], rtol=rtol, atol=1e-6, err_msg=k)
    # BatchNorm statistics of the first step are over the global batch, not per device.
    for a, b in zip(jax.tree.leaves(s1), jax.tree.leaves(s8)):
      np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    m1 = m1[-1]
    print("OK", {k: float(v) for k, v in m1.items()})
""")


def run_on_eight_cpu_devices(script: str) -> None:
  """Runs `script` in a fresh Python with 8 forced CPU devices; it must exit 0 printing "OK"."""
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  env = dict(
      os.environ,
      XLA_FLAGS="--xla_force_host_platform_device_count=8",
      JAX_PLATFORMS="cpu",
      PYTHONPATH=repo,
  )
  proc = subprocess.run(
      [sys.executable, "-c", script],
      cwd=repo,
      env=env,
      capture_output=True,
      text=True,
      timeout=600,
  )
  assert proc.returncode == 0, proc.stdout + proc.stderr
  assert proc.stdout.startswith("OK")


def test_one_device_and_eight_devices_agree():
  run_on_eight_cpu_devices(_SCRIPT)


def test_per_process_batch_size_rejects_indivisible_batch():
  assert sharding.per_process_batch_size(2 * jax.device_count()) == 2 * jax.local_device_count()
  with pytest.raises(ValueError, match="multiple of the device count"):
    sharding.per_process_batch_size(0)


def test_global_batch_is_sharded_over_data_axis():
  mesh = sharding.create_mesh()
  local = {"x": np.arange(2 * jax.device_count(), dtype=np.float32)}
  out = sharding.global_batch(mesh, local)
  assert out["x"].shape == (2 * jax.device_count(),)
  assert out["x"].sharding.spec == jax.sharding.PartitionSpec(sharding.DATA_AXIS)
  np.testing.assert_array_equal(np.asarray(out["x"]), local["x"])


def test_global_batches_stack_on_a_leading_step_axis():
  mesh = sharding.create_mesh()
  batches = [{"x": np.full((2, 3), i, np.float32)} for i in range(3)]
  stacked = sharding.global_batches(mesh, batches)["x"]
  assert stacked.shape == (3, 2, 3) and stacked.sharding == sharding.stacked_batch_sharding(mesh)
  np.testing.assert_array_equal(np.asarray(stacked)[:, 0, 0], [0, 1, 2])
  with pytest.raises(ValueError, match="same keys"):
    sharding.global_batches(mesh, [{"x": batches[0]["x"]}, {"y": batches[1]["x"]}])
  with pytest.raises(ValueError, match="one or more"):
    sharding.global_batches(mesh, [])
