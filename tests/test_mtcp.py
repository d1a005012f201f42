"""MT-CP's model: its structure as the released forward builds it, and 2 steps of its configs
from the command line on tiny NYUD-MT and PASCAL-Context data (train, evaluate, checkpoint,
resume)."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mtjax.models import mtcp
from tests.nyudmt_fixtures import make_nyudmt_layout
from tests.pascal_fixtures import make_pascal_layout
from tests.test_main import read_scalars, run_main

# A tiny MT-CP: every module of the released one, small widths and depths.
TINY = {
    "swin_embed_dim": 8, "swin_depths": (1, 1, 1, 1), "swin_num_heads": (1, 1, 1, 1),
    "swin_window_size": 2, "feature_size": 32, "mask_feature_size": 32, "encoder_layers": 1,
    "hidden_dim": 32, "num_queries": 2, "decoder_layers": 2, "num_labels": 3, "width": 32,
    "decoder_depths": (1, 1, 1), "decoder_num_heads": (1, 1, 1),
}  # fmt: skip
TINY_FLAGS = [
    f"--config.model.mtcp.{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
    for k, v in TINY.items()
]


def test_structure_heads_and_deep_supervision():
  settings = mtcp.settings_from_config({**TINY, "head_upsample": {"semseg": 2, "depth": 2}})
  model = mtcp.MTCP(num_classes=5, tasks=("semseg", "depth", "normal"), settings=settings)
  images = np.random.default_rng(0).uniform(size=(2, 64, 96, 3)).astype(np.float32)
  variables = jax.jit(model.init)(jax.random.key(0), images)
  params = variables["params"]
  assert set(params) >= {"trunk", "swin_semseg", "fpn_depth", "cfm_normal", "trace_back_semseg"}
  # Built by the released model, never used by its forward: not built here.
  for name in ("swin_semseg", "swin_depth", "swin_normal"):
    assert "patch_embeddings" not in params[name] and "embeddings_norm" not in params[name]
  assert set(params["fpn_semseg"]) == {
      "lateral_convs_0",
      "lateral_convs_1",
      "lateral_convs_2",
      "fpn_convs_0",
  }
  assert "conv2" not in params["cfm_depth"] and "conv3" not in params["cfm_depth"]
  assert set(params["trace_back_depth"]) == {"spf_modules_0", "spf_modules_1", "spf_modules_2"}
  # The released depth head (conv to width / 2, upsampling, conv to 32, conv) vs the others.
  assert params["head_depth"]["conv_1"]["kernel"].shape[-1] == 32 and "bn" not in params["head_depth"]
  assert params["head_depth"]["conv_0"]["kernel"].shape[-1] == 16 and "bn" in params["head_semseg"]
  # The decoders' Swin stages: 32, 64, 128 channels for width 32 (released: 256, 512, 1024).
  assert params["trace_back_depth"]["spf_modules_0"]["dep_conv"]["kernel"].shape[-1] == 128
  out = jax.eval_shape(model.apply, variables, images)  # Evaluation: the final heads only.
  assert sorted(out) == ["depth", "normal", "semseg"]
  assert out["semseg"].shape == (2, 64, 96, 5) and out["depth"].shape == (2, 64, 96, 1)
  train_out, _ = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=["batch_stats"]))(
      variables, images
  )
  np.testing.assert_allclose(np.linalg.norm(train_out["normal"], axis=-1), 1.0, rtol=1e-4)
  deep = train_out["deep_supervision"]
  assert len(deep) == 2 and all(d["weight"] == 0.5 for d in deep)
  assert deep[0]["semseg"].shape == (2, 64, 96, 5)


def test_remat_keeps_the_variables_values_and_gradients():
  images = np.random.default_rng(1).uniform(size=(2, 32, 48, 3)).astype(np.float32)
  models = {
      remat: mtcp.MTCP(4, settings=mtcp.settings_from_config({**TINY, "remat": remat}))
      for remat in (False, True)
  }
  variables = jax.jit(models[False].init)(jax.random.key(0), images)
  assert jax.tree.structure(jax.eval_shape(models[True].init, jax.random.key(0), images)) == (
      jax.tree.structure(variables)
  )

  def loss(params, model, x):
    out, stats = model.apply(
        {**variables, "params": params}, x, train=True, mutable=["batch_stats"]
    )
    # First channels: a unit normal's squared length would give a gradient of rounding only.
    first = lambda o: sum(jnp.mean(o[t][..., 0] ** 2) for t in ("semseg", "depth", "normal"))
    return first(out) + sum(first(d) for d in out["deep_supervision"]), stats

  step = jax.jit(jax.value_and_grad(loss, has_aux=True), static_argnums=1)
  (value, stats), grads = step(variables["params"], models[True], images)
  (want_value, want_stats), want_grads = step(variables["params"], models[False], images)
  np.testing.assert_allclose(value, want_value, rtol=1e-6)
  jax.tree.map(
      lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), stats, want_stats
  )
  # A tiny random MT-CP's gradient is chaotic in float32 (BatchNorm over 1x2 maps): moving the
  # images by one ulp moves it by ~15 % of its norm. Rematerialisation must stay within that.
  _, ulp_grads = step(variables["params"], models[False], images * np.float32(1 + 2**-23))
  norm = lambda t: np.sqrt(sum(np.sum(np.square(np.float64(x))) for x in jax.tree.leaves(t)))
  minus = lambda a, b: jax.tree.map(lambda x, y: np.float64(x) - np.float64(y), a, b)
  assert norm(minus(grads, want_grads)) <= 2 * norm(minus(ulp_grads, want_grads))
  # The blocks are rematerialised (a checkpoint in the gradient's program), not merely the same;
  # the primitive prints as "remat2" in JAX 0.10 and "checkpoint" in others.
  jaxpr = lambda m: str(jax.make_jaxpr(jax.grad(lambda p: loss(p, m, images)[0]))(variables["params"]))
  remats = lambda m: re.findall(r"\b(?:checkpoint|remat2?)\b", jaxpr(m))
  # 13 blocks (the trunk; per task the decoder, pyramid, Coherence Fusion, Trace-Back) and, nested
  # in them, the Swin blocks (4 in the trunk, 3 per decoder) and the deformable encoder layer.
  assert len(remats(models[True])) > 13 + 13 and not remats(models[False])


def test_resize_bilinear_aligned_equals_pytorch():
  torch = pytest.importorskip("torch")
  x = np.random.default_rng(0).normal(size=(1, 5, 7, 3)).astype(np.float32)
  for factor in (2, 4):
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(x.transpose(0, 3, 1, 2)), scale_factor=factor, mode="bilinear",
        align_corners=True,
    )  # fmt: skip
    np.testing.assert_allclose(
        np.asarray(mtcp.resize_bilinear_aligned(x, factor)),
        expected.numpy().transpose(0, 2, 3, 1),
        atol=1e-5,
    )


def test_unknown_settings_are_named():
  with pytest.raises(ValueError, match=r"unknown fields \['swin_dept'\]"):
    mtcp.settings_from_config({"swin_dept": (1,)})


@pytest.mark.parametrize(
    "name, tasks, upsample, spread",
    [
        ("nyudmt_mtcp", ("semseg", "depth", "normal"), {"semseg": 2, "depth": 2, "normal": 1}, 7.5),
        ("pascal_context_mtcp", ("semseg", "human_parts", "saliency"), {"semseg": 4, "human_parts": 4, "saliency": 1}, 1.6),
    ],
)  # fmt: skip
def test_configs_build_the_released_model(name, tasks, upsample, spread):
  import importlib

  from mtjax.models import registry

  config = importlib.import_module(f"configs.{name}").get_config()
  assert tuple(config.tasks) == tasks and config.weighting.name == "lps"
  assert config.weighting.spread == spread
  assert config.weighting.as_released and not config.weighting.apply_weights
  assert (config.optimizer, config.learning_rate, config.weight_decay) == ("adamw", 5e-5, 1e-4)
  assert (config.lr_schedule, config.num_epochs, config.batch_size) == ("poly", 100.0, 2)
  model = registry.create_model(config)
  assert isinstance(model, mtcp.MTCP) and model.normalize_input
  assert dict(model.settings.head_upsample) == upsample
  released = mtcp.MTCPSettings()  # The sizes the configs give are the released ones.
  assert model.settings.trunk == released.trunk and model.settings.decoder == released.decoder


def _nyudmt(root):
  layout = make_nyudmt_layout(root, splits={"train": 4, "val": 2}, hw=(32, 48), size_jitter=4)
  return layout, (32, 48)


def _pascal(root):
  sizes = ((16, 16), (20, 24), (24, 18))
  layout = make_pascal_layout(root, splits={"train": 4, "val": 3}, hw_list=sizes)
  return layout, (32, 32)


@pytest.mark.slow
@pytest.mark.parametrize(
    "config, make_data, tasks",
    [
        ("configs/nyudmt_mtcp.py", _nyudmt, ("semseg", "depth", "normal")),
        ("configs/pascal_context_mtcp.py", _pascal, ("semseg", "human_parts", "saliency")),
    ],
)
def test_mtcp_configs_train_evaluate_checkpoint_and_resume_from_the_command_line(
    tmp_path, config, make_data, tasks
):
  data, size = make_data(tmp_path / "data")
  flags = [
      f"--config.dataset.data_dir={data}", f"--config.dataset.size=({size[0]},{size[1]})",
      "--config.batch_size=2", "--config.label_setting=full", "--config.eval_every_steps=1",
      "--config.checkpoint_every_steps=1", "--config.steps_per_call=1",
      "--config.log_every_steps=1", *TINY_FLAGS,
  ]  # fmt: skip
  workdir = tmp_path / "run"
  env = {"JAX_COMPILATION_CACHE_DIR": str(tmp_path / "xla_cache")}  # The rerun compiles nothing.
  first = run_main(str(workdir), *flags, "--config.num_train_steps=1", config=config, env=env)
  assert first.returncode == 0, (first.stdout + first.stderr)[-4000:]
  scalars = read_scalars(workdir)
  for task in tasks:
    assert any(k.startswith(f"eval/{task}/") for k in scalars), (task, sorted(scalars))
  assert "train/grad_norm/total" not in scalars  # Not asked for.
  second = run_main(str(workdir), *flags, "--config.num_train_steps=2", config=config, env=env)
  log = second.stdout + second.stderr
  assert second.returncode == 0, log[-4000:]
  assert re.search(r"resumed from \S+ at step 1", log), log[-3000:]
