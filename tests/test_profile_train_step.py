"""tools/profile_train_step.py: instruction metadata from compiled HLO, the grouping of op names,
and one profiled call of a tiny config."""

import jax
import jax.numpy as jnp
import pytest

from tests.test_train import tiny_config
from tools import profile_train_step as prof


def test_classify_groups_by_primitive_direction_and_folded_layer():
  assert prof.classify(
      "jit(train_step)/transpose(jvp(HRNetMTL))/backbone/stage2_0_fuse_layers_1_0/conv_general_dilated",
      "fusion",
  ) == ("conv_general_dilated (backward)", "HRNetMTL/backbone/stage#_#_fuse_layers_#_#")
  assert prof.classify(
      "jit(train_step)/while/body/closed_call/jvp(SegNetMTL)/enc_3/bn/reduce_sum", "fusion"
  ) == ("reduce_sum", "SegNetMTL/enc_#/bn")
  assert prof.classify("", "copy") == ("copy", "(no metadata)")


def test_scope_is_the_first_part_of_the_layer_and_the_direction():
  assert prof.scope("conv_general_dilated (backward)", "HRNetMTL/backbone/conv#") == (
      "HRNetMTL (backward)"
  )
  assert prof.scope("eigh", "rdc_released_contrast/eigh") == "rdc_released_contrast"
  assert prof.scope("copy", "(no metadata)") == "(no metadata)"


def test_instruction_metadata_names_the_compiled_instructions():
  def f(x, w):
    with jax.named_scope("layer7"):
      return jnp.tanh(x @ w).sum()

  x = jnp.ones((4, 8))
  compiled = jax.jit(jax.grad(f, argnums=1)).lower(x, jnp.ones((8, 3))).compile()
  meta = prof.instruction_metadata(compiled.as_text())
  assert meta and all(set(m) == {"opcode", "shape", "op_name"} for m in meta.values())
  named = [m for m in meta.values() if "layer7" in m["op_name"]]
  assert named and any(prof.classify(m["op_name"], m["opcode"])[1] == "layer#" for m in named)


def test_profile_of_a_tiny_config_attributes_op_time(data_dir):
  config = tiny_config(data_dir)
  config.steps_per_call = 2
  lines = []
  out = prof.profile(config, top=5, report=lines.append)
  assert out["steps_per_call"] == 2 and out["wall_s"] > 0 and out["op_us"] > 0
  total = sum(out["by_primitive"].values())
  assert total == pytest.approx(sum(out["by_layer"].values())) == pytest.approx(out["op_us"])
  assert sum(out["by_scope"].values()) == pytest.approx(total)
  assert out["by_scope"]["SegNetMTL"] > 0 and out["by_scope"]["SegNetMTL (backward)"] > 0
  assert any(k.startswith("conv_general_dilated") for k in out["by_primitive"])
  assert any("SegNetMTL" in k for k in out["by_layer"]) and "2 steps per call" in lines[0]
