"""tools/roofline.py: analytic FLOPs against hand counts, the roofline arithmetic, and the report
of a tiny config (XLA's FLOPs and the jaxpr's agree)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.test_train import tiny_config
from tools import roofline


def _eqns(fn, *args):
  return jax.make_jaxpr(fn)(*args).jaxpr.eqns


def test_matmul_and_convolution_flops_are_the_hand_counts():
  a, b = jnp.ones((3, 5, 7)), jnp.ones((3, 7, 11))
  (dot,) = [e for e in _eqns(jnp.matmul, a, b) if e.primitive.name == "dot_general"]
  assert roofline.eqn_flops(dot) == 2 * 3 * 5 * 11 * 7
  x, k = jnp.ones((2, 9, 10, 6)), jnp.ones((3, 3, 3, 8))  # Two feature groups of 3 channels.

  def conv(x, k):
    return jax.lax.conv_general_dilated(
        x, k, (2, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=2
    )

  (eqn,) = [e for e in _eqns(conv, x, k) if e.primitive.name == "conv_general_dilated"]
  assert roofline.eqn_flops(eqn) == 2 * (2 * 5 * 10 * 8) * (3 * 3) * 3
  (add,) = _eqns(jnp.add, a, a)
  assert roofline.eqn_flops(add) == a.size


def test_scopes_count_scan_bodies_length_times_and_split_backward():
  w = jnp.ones((4, 4))

  def f(w):
    def body(c, _):
      return c @ w, None

    return jax.lax.scan(body, jnp.ones((2, 4)), None, length=5)[0].sum()

  forward = sum(roofline.jaxpr_flops_by_scope(jax.make_jaxpr(f)(w)).values())
  assert forward == 5 * (2 * 2 * 4 * 4) + 8  # 5 matmuls of 2 x 4 x 4, the sum of 8 inputs.
  scopes = roofline.jaxpr_flops_by_scope(jax.make_jaxpr(jax.grad(f))(w))
  assert any(s.endswith("(backward)") for s in scopes) and sum(scopes.values()) > 2 * 5 * 64


def test_roofline_arithmetic():
  acc = roofline.Accelerator("x", {"float32": 100.0}, 10.0, "test")
  compute = roofline.roofline(1000.0, 50.0, acc, "float32")  # 10 s of FLOPs, 5 s of bytes.
  assert compute["bound_by"] == "compute" and compute["estimate_s"] == 10.0
  assert compute["mfu_ceiling"] == 1.0
  memory = roofline.roofline(1000.0, 400.0, acc, "float32")  # 40 s of bytes.
  assert memory["bound_by"] == "memory" and memory["mfu_ceiling"] == pytest.approx(0.25)
  with pytest.raises(ValueError, match="bfloat16"):
    roofline.roofline(1.0, 1.0, acc, "bfloat16")


def test_report_of_a_tiny_config(data_dir):
  config = tiny_config(data_dir)
  config.model.conv_impl = "xla"
  report = roofline.analyze(config, ("a100", "tpu_v5e"), top=5)
  xla = report["xla"]
  assert report["batch_shape"] == [2, 32, 64, 3] and xla["bytes_accessed"] > 0
  # Two independent counts of the same step: XLA's HLO cost analysis and the jaxpr's.
  np.testing.assert_allclose(report["jaxpr_flops"], xla["flops"], rtol=0.05)
  assert len(report["by_scope"]) == 5 and report["by_scope"][0][1] >= report["by_scope"][1][1]
  row = report["accelerators"]["a100"]
  assert row["compute_s"] == pytest.approx(xla["flops"] / 156e12)
  assert row["images_per_s"] == pytest.approx(2 / row["estimate_s"])
  text = roofline.format_report(report)
  assert "NVIDIA A100" in text and "TPU v5e" in text and "H100" not in text.split("Sources")[0]
  with pytest.raises(KeyError, match="tpu_v9"):
    roofline.analyze(config, ("tpu_v9",))
