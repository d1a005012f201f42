"""The install split: the core dependencies are the functional API's, and the functional API imports
and runs in a process where the training stack (TensorFlow, TFDS, CLU, Orbax, scikit-image, ...)
cannot be imported."""

import os
import subprocess
import sys
import textwrap
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Import names of the `train` extra's packages: none may be needed by the functional API.
TRAINING_STACK = (
    "tensorflow", "tensorflow_datasets", "tensorboard", "clu", "orbax", "skimage", "cv2", "PIL",
    "safetensors", "tqdm", "torch",
)  # fmt: skip


def _requirement_names(requirements):
  names = set()
  for r in requirements:
    for sep in "<>=!~[; ":
      r = r.split(sep)[0]
    names.add(r.lower())
  return names


def test_core_dependencies_leave_the_training_stack_to_the_train_extra():
  with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
    project = tomllib.load(f)["project"]
  core = _requirement_names(project["dependencies"])
  train = _requirement_names(project["optional-dependencies"]["train"])
  stack = {
      "tensorflow-cpu", "tensorflow-datasets", "tensorboard", "clu", "orbax-checkpoint",
      "scikit-image", "opencv-python-headless", "pillow",
  }  # fmt: skip
  assert not core & stack, core & stack
  assert stack <= train, stack - train
  assert {"jax", "flax", "optax", "numpy"} <= core


def test_functional_api_imports_and_runs_without_the_training_stack():
  code = f"""
      import importlib.abc, sys

      class Blocked(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
          if name.split(".")[0] in {TRAINING_STACK!r}:
            raise ImportError(f"{{name}} is blocked: not a core dependency")

      sys.meta_path.insert(0, Blocked())

      import jax, jax.numpy as jnp, numpy as np, optax
      from mtjax import weighting
      from mtjax.ops import gaussian
      from mtjax.regularizers import rdc

      @jax.jit
      def loss(features, ids):
        means, covs, counts = gaussian.region_gaussians(features, ids, 4)
        d = gaussian.pairwise_wasserstein2(means, covs, means, covs)
        valid = counts > 0
        return rdc.info_nce(-d, valid, valid)[0].sum()

      rng = np.random.default_rng(0)
      features = jnp.asarray(rng.normal(size=(8, 8, 3)), jnp.float32)
      ids = jnp.asarray(np.repeat(np.arange(4), 16).reshape(8, 8), jnp.int32)
      value, grad = jax.value_and_grad(loss)(features, ids)
      assert np.isfinite(value) and np.isfinite(grad).all() and np.abs(grad).sum() > 0

      tx = optax.chain(
          weighting.loss_prioritization(3, spread=7.5, history=1, steps_per_epoch=2), optax.adam(1e-3)
      )
      params = jnp.ones(3)
      state = tx.init(params)
      for _ in range(4):
        _, state = tx.update(
            jnp.ones(3), state, params, task_losses=jnp.array([1.0, 2.0, 3.0]),
            task_counts=jnp.ones(3),
        )
      weights = weighting.current_weights(state)
      assert weights.shape == (3,) and np.isfinite(weights).all()
      loaded = sorted({{m.split(".")[0] for m in sys.modules}} & set({TRAINING_STACK!r}))
      assert not loaded, loaded
      print("ok", float(value), np.asarray(weights).round(3).tolist())
      """
  proc = subprocess.run(
      [sys.executable, "-c", textwrap.dedent(code)],
      cwd=REPO, env=dict(os.environ, JAX_PLATFORMS="cpu"), capture_output=True, text=True,
      timeout=300,
  )  # fmt: skip
  assert proc.returncode == 0, proc.stderr[-4000:]
  assert proc.stdout.startswith("ok ")
