"""Building blocks of SegNet-MTL and HRNet: 2x2 max-pool / max-unpool, K x K convolution,
BatchNorm.

All arrays are NHWC. The convolution has interchangeable implementations (``conv2d``) that
compute the same function (tested to agree) and share one parameter layout -- ``kernel``
[kh, kw, Cin, Cout] and ``bias`` [Cout] as ``flax.linen.Conv`` -- so a checkpoint written with
one loads into any other; ``"auto"`` picks per backend at trace time. ``BatchNorm`` keeps the
variable layout of ``flax.linen.BatchNorm`` (params ``scale``, ``bias``; batch_stats ``mean``,
``var``) with PyTorch's running-variance rule.

Reference: MTAN ``SegNet`` (lorenmt/mtan; ``nn.Conv2d(k=3, padding=1)``, ``nn.BatchNorm2d``,
``nn.MaxPool2d(2, 2, return_indices=True)``, ``nn.MaxUnpool2d(2, 2)``);
docs/metrics.md "SegNet-MTL architecture"; docs/performance.md.

**Convolutions inside loops.** Autodiff's gradients of ``lax.conv_general_dilated`` relabel
dimensions (the input gradient reads the kernel as "HWOI", the kernel gradient contracts the batch
as "f01b"). Outside loops XLA:CPU's layout assignment turns them into its library's NHWC / HWIO
form (YNNPACK); inside a ``while`` (``lax.scan``, as ``config.steps_per_call`` > 1 runs its steps)
it does not, and they run in XLA's generic convolution (jax-ml/jax#12868): an HRNet-W18 step at
96x128, batch 2, took 1,493-1,504 ms at 8 steps per call vs 274-321 ms at 1 with "xla", 92 % of
it in those convolutions (profile). ``conv2d``'s "mmgrad" writes its gradients in the forward's
own layout (a custom VJP), so a loop body compiles to the same kernels as a single step: 223-248
ms at 8 steps per call, 269-308 ms at 1 (same runs; tests/test_conv.py checks the compiled loop's
layouts).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax import lax

Array = jax.Array

CONV_IMPLS = ("auto", "xla", "im2col", "mmgrad")

# PyTorch's nn.init.xavier_normal_: N(0, 2 / (fan_in + fan_out)), fan = channels * kh * kw.
xavier_normal = nn.initializers.variance_scaling(1.0, "fan_avg", "normal")


def _on_cpu() -> bool:
  return jax.default_backend() == "cpu"


def _check_nhwc_even(x: Array, what: str) -> None:
  if x.ndim != 4 or x.shape[1] % 2 or x.shape[2] % 2:
    raise ValueError(f"{what} expects [B, H, W, C] with even H and W; got shape {x.shape}")


# --------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------


def _first_max_windows(x: Array) -> tuple[tuple[Array, ...], tuple[Array, ...]]:
  """The four entries of each 2x2 window of x [B, H, W, C] in row-major order (0,0), (0,1), (1,0),
  (1,1), each [B, H/2, W/2, C], and four boolean masks marking the FIRST maximum of each window
  (exactly one is true per window; PyTorch's ``MaxPool2d(return_indices=True)`` tie rule)."""
  b, h, w, c = x.shape
  x6 = x.reshape(b, h // 2, 2, w // 2, 2, c)
  entries = (x6[:, :, 0, :, 0], x6[:, :, 0, :, 1], x6[:, :, 1, :, 0], x6[:, :, 1, :, 1])
  e0, e1, e2, e3 = entries
  top = jnp.maximum(jnp.maximum(e0, e1), jnp.maximum(e2, e3))
  m0 = e0 == top
  m1 = ~m0 & (e1 == top)
  m2 = ~(m0 | m1) & (e2 == top)
  return entries, (m0, m1, m2, ~(m0 | m1 | m2))


def max_pool_2x2(x: Array) -> Array:
  """2x2 max-pooling with stride 2 (``nn.MaxPool2d(2, 2)``).

  Written as elementwise selects over the four strided views of each window (XLA fuses them into
  one pass; on XLA:CPU 3-4x faster, forward and backward with ``max_unpool_2x2``, than
  ``reduce_window`` and its select-and-scatter gradient). The gradient goes to the first maximum
  of each window in row-major order, as PyTorch's (ties are common after a ReLU: a window of
  zeros).

  Args:
    x: [B, H, W, C] float, H and W even.

  Returns:
    [B, H/2, W/2, C], same dtype.

  Raises:
    ValueError: if x is not 4-D or H or W is odd.
  """
  _check_nhwc_even(x, "max_pool_2x2")
  (e0, e1, e2, e3), (m0, m1, m2, _) = _first_max_windows(x)
  return jnp.where(m0, e0, jnp.where(m1, e1, jnp.where(m2, e2, e3)))


def max_unpool_2x2(y: Array, x: Array) -> Array:
  """Max-unpooling of ``y`` to the argmax positions of ``max_pool_2x2(x)`` (``nn.MaxUnpool2d``).

  out[b, 2i+di, 2j+dj, c] = y[b, i, j, c] if (di, dj) is the argmax of x's window (i, j) in
  channel c, else 0. The pre-pool activation ``x`` plays the role of PyTorch's ``indices``: the
  argmax masks are recomputed from it (elementwise, fused), so no index array is stored. Ties:
  the FIRST maximum of (0,0), (0,1), (1,0), (1,1) wins -- as PyTorch's ``MaxPool2d(
  return_indices=True)``. Differentiable in ``y`` (the adjoint gathers at the argmax); no
  gradient flows to ``x`` (as for PyTorch's integer indices).

  Args:
    y: [B, H/2, W/2, C] values to place.
    x: [B, H, W, C] the tensor that was pooled.

  Returns:
    [B, H, W, C], dtype of ``y``.

  Raises:
    ValueError: inconsistent shapes, or odd H or W.
  """
  _check_nhwc_even(x, "max_unpool_2x2")
  expected = (x.shape[0], x.shape[1] // 2, x.shape[2] // 2, x.shape[3])
  if y.shape != expected:
    raise ValueError(f"max_unpool_2x2: y has shape {y.shape}, expected {expected} for x {x.shape}")
  _, masks = _first_max_windows(lax.stop_gradient(x))
  zero = jnp.zeros_like(y)
  p0, p1, p2, p3 = (jnp.where(m, y, zero) for m in masks)
  out = jnp.stack([jnp.stack([p0, p1], axis=3), jnp.stack([p2, p3], axis=3)], axis=2)
  return out.reshape(x.shape[:3] + (y.shape[3],))


# --------------------------------------------------------------------------------------------
# 3x3 convolution
# --------------------------------------------------------------------------------------------


def resolve_conv_impl(impl: str) -> str:
  """Maps ``"auto"`` to ``"mmgrad"`` on the CPU backend and ``"xla"`` elsewhere (at trace time).

  Raises:
    ValueError: for an unknown implementation name.
  """
  if impl not in CONV_IMPLS:
    raise ValueError(f"conv_impl must be one of {CONV_IMPLS}, got {impl!r}")
  if impl == "auto":
    return "mmgrad" if _on_cpu() else "xla"
  return impl


def fusion_boundary(x: Array) -> Array:
  """``x`` unchanged (bit for bit, gradient 1), as a buffer XLA:CPU does not recompute in its
  consumers; the identity elsewhere.

  XLA:CPU's fusion duplicates cheap elementwise producers into every consumer. In a residual chain
  (``x_k = relu(bn(conv(x_{k-1})) + x_{k-1})``: each block's output feeds the next convolution and
  the next sum) it fused every sum with the whole BatchNorm-add-ReLU chain before it and recomputed
  that chain in each consumer, forward and backward: HRNet-W18 at 288x384, batch 2, spent 606 of
  its 2,278 ms/step of op time in those fusions (``tools/profile_train_step.py``). XLA strips
  ``lax.optimization_barrier`` before fusing on the CPU, but does not duplicate a producer it counts
  as expensive, such as a division: so ``x`` is divided by a 1 computed at run time (from
  ``isnan`` of one element: 1 whatever the values, never folded to a constant), which costs one
  division per element where ``x`` is written.

  Args:
    x: a float array of any shape (at least one element).

  Returns:
    ``x``, same shape and dtype.
  """
  if not _on_cpu():
    return x
  flag = jnp.isnan(x.reshape(-1)[0]).astype(x.dtype)
  return x / lax.stop_gradient(1 + 0 * flag)


def _xla_conv(x: Array, kernel: Array, stride: int = 1, p: int = 1, precision: Any = None) -> Array:
  """``lax.conv_general_dilated`` NHWC / HWIO, zero padding p on every side."""
  return lax.conv_general_dilated(
      x,
      kernel,
      (stride, stride),
      ((p, p), (p, p)),
      precision=precision,
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv_mmgrad(x: Array, kernel: Array, stride: int, p: int) -> Array:
  return _xla_conv(x, kernel, stride, p)


def _conv_mmgrad_fwd(x, kernel, stride, p):
  return _xla_conv(x, kernel, stride, p), (x, kernel)


# Kernel gradients whose larger operand (x or the output gradient, the whole batch) has at least
# this many bytes run image by image: the shifted copies below (and the matmul library's packed
# operands) are then one image's, not the whole batch's. SegNet-MTL at 288x384, batch 8, on the
# 2-core CPU: XLA's temporaries 11.0 -> 6.8 GiB, system time (page zeroing) 18-20 -> 4-5 s per
# step, 33.8 -> 26.2 s per step (A/B in one process); batch 2: 5.64 -> 5.58 s. The threshold was
# first per image; counting the batch also runs many small maps image by image, which XLA:CPU's
# matmul does 2-4x faster than one contraction over all their pixels (kernel gradient alone, 2-core
# CPU: 40 maps 144x192, 16 -> 24 channels, 283 -> 93 ms; 40 x 72x96, 32 -> 32: 164 -> 59 ms;
# 10 x 72x96, 18 -> 18: 23.2 -> 11.7 ms) while below it batching stays faster (10 x 36x48, 36 -> 36:
# 4.8 ms batched, 7.6 by image; 8 x 96x128, 8 -> 8: 3.2 vs 4.8 ms).
_KGRAD_BATCH_BYTES = 2**22


def _kernel_grad_by_image(x: Array, g: Array) -> bool:
  """Whether ``_conv_mmgrad_bwd`` sums the kernel gradient image by image (``_KGRAD_BATCH_BYTES``)."""
  return x.shape[0] > 1 and max(x.size, g.size) * x.dtype.itemsize >= _KGRAD_BATCH_BYTES


def _conv_mmgrad_bwd(stride, p, res, g):
  x, kernel = res
  size = kernel.shape[0]
  # The transposed convolution in the forward's own NHWC / HWIO layout: the output gradient dilated
  # by the stride, the kernel flipped and its channels swapped as an explicit copy. Autodiff's
  # transpose instead relabels the kernel's dimensions ("HWOI"), which XLA:CPU turns into its
  # library layout only outside loops (module docstring, "Convolutions inside loops").
  pads = [(size - 1 - p, n + p - (m - 1) * stride - 1) for n, m in zip(x.shape[1:3], g.shape[1:3])]
  dx = lax.conv_general_dilated(
      g,
      jnp.flip(kernel, (0, 1)).swapaxes(2, 3),
      (1, 1),
      pads,
      lhs_dilation=(stride, stride),
      dimension_numbers=("NHWC", "HWIO", "NHWC"),
  )
  if _kernel_grad_by_image(x, g):
    # One image per iteration (lax.scan), summed in image order: the same sum as the batched form
    # with a fraction of its temporaries (XLA:CPU maps and zeroes them at every call).
    def add_image(dk, xg):
      return dk + _kernel_grad(xg[0][None], xg[1][None], size, stride, p), None

    dk, _ = lax.scan(add_image, jnp.zeros(kernel.shape, _accumulator(x)), (x, g))
  else:
    dk = _kernel_grad(x, g, size, stride, p)
  return dx.astype(x.dtype), dk.astype(kernel.dtype)


def _pixel_products(a: Array, b: Array) -> Array:
  """a [..., Ca], b [..., Cb] -> [Ca, Cb] (float32, float64 for float64 inputs), the products
  summed over every leading axis."""
  a, b = a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1])
  return lax.dot_general(a, b, (((0,), (0,)), ((), ())), preferred_element_type=_accumulator(a))


def _accumulator(x: Array):
  """float32, or float64 for float64 inputs: the kernel gradient's accumulation type."""
  return jnp.promote_types(x.dtype, jnp.float32)


def _kernel_grad(x: Array, g: Array, size: int, stride: int, p: int) -> Array:
  """dk [K, K, Cin, Cout] (``_accumulator``'s dtype) of a K x K conv with ``stride`` and zero
  padding p from its input x [B, H, W, Cin] and output gradient g [B, Ho, Wo, Cout]."""
  h, w, cin, cout = x.shape[1], x.shape[2], x.shape[3], g.shape[3]
  pad = lambda a, n: jnp.pad(a, ((0, 0), (n, n), (n, n), (0, 0)))
  shifts = [(i, j) for i in range(size) for j in range(size)]
  if (size, stride, p) != (3, 1, 1):
    # dk[i, j] = sum_q xpad[stride q + (i, j)] g[q]: K² matmuls of strided views of x with g.
    rows, cols = (g.shape[1] - 1) * stride + 1, (g.shape[2] - 1) * stride + 1
    xp = pad(x, p) if p else x
    parts = [
        _pixel_products(xp[:, i : i + rows : stride, j : j + cols : stride], g) for i, j in shifts
    ]
    return jnp.stack(parts).reshape(size, size, cin, cout)

  # dk[i, j] = sum_p xpad[p + (i, j)] g[p] = sum_p x[p] gpad[p + (2 - i, 2 - j)], contracting over
  # the B H W pixels. Where the channels differ: nine matmuls, each of the wider operand as it is
  # with a shifted view of the narrower one, padded (its nine views are copies); measured on
  # XLA:CPU 1.2-4x faster than the buffers below (the 64 -> 3x64 head at 288x384 b2: 990 -> 501
  # ms). Where they are equal: one matmul of a 3x column-shift buffer of x with a 3x row-shift
  # buffer of g (nine matmuls were on par alone but made the SegNet-MTL step 2.4 s slower).
  # XLA's own kernel gradient is 2-3x slower than either.
  if cin != cout:
    if cin > cout:
      gp = pad(g, 1)
      parts = [_pixel_products(x, gp[:, 2 - i : 2 - i + h, 2 - j : 2 - j + w]) for i, j in shifts]
    else:
      xp = pad(x, 1)
      parts = [_pixel_products(xp[:, i : i + h, j : j + w], g) for i, j in shifts]
    return jnp.stack(parts).reshape(3, 3, cin, cout)
  # The 3 column shifts go into x's channels, the 3 row shifts into g's (g zero-padded by (i, 2 - i)
  # rows): the matmul yields dk as [(j, cin), (i, cout)].
  xp = pad(x, 1)
  xc = jnp.concatenate([xp[:, :, j : j + w] for j in range(3)], axis=-1)
  gr = jnp.concatenate([jnp.pad(g, ((0, 0), (i, 2 - i), (0, 0), (0, 0))) for i in range(3)], -1)
  if xc.shape[1] * w >= 24 * max(cin, cout):
    # Long contraction: one matmul per image, then sum (measured 20-35% faster on XLA:CPU).
    dk = jnp.einsum("bhwm,bhwn->bmn", xc, gr, preferred_element_type=_accumulator(x)).sum(0)
  else:
    dk = lax.dot_general(
        xc, gr, (((0, 1, 2), (0, 1, 2)), ((), ())), preferred_element_type=_accumulator(x)
    )
  return dk.reshape(3, cin, 3, cout).transpose(2, 0, 1, 3)


_conv_mmgrad.defvjp(_conv_mmgrad_fwd, _conv_mmgrad_bwd)


def conv2d(
    x: Array,
    kernel: Array,
    bias: Array | None = None,
    *,
    stride: int = 1,
    padding: int | None = None,
    impl: str = "auto",
    precision: Any = None,
) -> Array:
  """K x K convolution with the same stride and zero padding in H and W, NHWC / HWIO
  (``nn.Conv2d(k, stride, padding)``; padding K // 2 by default, K odd).

  Implementations (same math, tested to agree in value and gradient):
    "xla":    ``lax.conv_general_dilated``, autodiff gradients (cuDNN on GPU). On XLA:CPU the
              forward and input gradient run in YNNPACK outside loops; the kernel gradient is
              2-3x slower than "mmgrad"'s; inside a loop the gradients fall back to XLA's
              generic convolution (module docstring).
    "im2col": 3x3 stride 1 padding 1 only: pad, concatenate the 9 shifted views along channels
              -> [B, H, W, 9 Cin], one matmul with ``kernel.reshape(9 Cin, Cout)``; autodiff.
    "mmgrad": forward by ``lax.conv_general_dilated``; input gradient by a convolution in the
              same NHWC / HWIO layout (custom VJP); kernel gradient by matmuls over the pixels:
              K² of strided views, or for 3x3 stride 1 nine (Cin != Cout) or one (Cin = Cout, of
              shift buffers of both); image by image on large batches (``_KGRAD_BATCH_BYTES``).
              ``precision`` is ignored.
    "auto":   see ``resolve_conv_impl``.

  Args:
    x: [B, H, W, Cin] float.
    kernel: [K, K, Cin, Cout] float.
    bias: optional [Cout].
    stride: the same in H and W, >= 1.
    padding: zero rows / columns on every side, 0 <= padding < K; None: K // 2 (K odd).
    impl: implementation name.
    precision: passed to the matmul / convolution ("xla", "im2col").

  Returns:
    [B, Ho, Wo, Cout], Ho = (H + 2 padding − K) // stride + 1 (>= 1), in the result dtype of
    ``x`` and ``kernel``.

  Raises:
    ValueError: unknown impl, mismatched shapes, a non-square kernel, an even kernel without
      padding, stride < 1, padding outside [0, K), a map smaller than the kernel, or "im2col" for
      anything but 3x3 stride 1 padding 1.
  """
  impl = resolve_conv_impl(impl)
  size = kernel.shape[0]
  if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[1] != size or kernel.shape[2] != x.shape[-1]:
    raise ValueError(
        f"conv2d: x {x.shape} (want [B, H, W, Cin]) does not fit kernel {kernel.shape} (want "
        "[K, K, Cin, Cout])"
    )
  if padding is None:
    if size % 2 == 0:
      raise ValueError(f"conv2d: a {size}x{size} kernel needs an explicit padding")
    padding = size // 2
  if stride < 1 or not 0 <= padding < size:
    raise ValueError(
        f"conv2d: stride {stride}, padding {padding}: want stride >= 1 and 0 <= padding < {size}"
    )
  if min(x.shape[1:3]) + 2 * padding < size:
    raise ValueError(
        f"conv2d: map {x.shape[1:3]} with padding {padding} is smaller than {size}x{size}"
    )
  if impl == "xla":
    y = _xla_conv(x, kernel, stride, padding, precision)
  elif impl == "mmgrad":
    y = _conv_mmgrad(x, kernel, stride, padding)
  else:
    if (size, stride, padding) != (3, 1, 1):
      raise ValueError(
          f"conv2d: impl 'im2col' is 3x3 stride 1 padding 1 only, got {size}x{size} stride "
          f"{stride} padding {padding}"
      )
    h, w, cin = x.shape[1:]
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = jnp.concatenate([xp[:, i : i + h, j : j + w] for i in range(3) for j in range(3)], -1)
    y = jnp.dot(cols, kernel.reshape(9 * cin, -1), precision=precision)
  return y if bias is None else y + bias


def conv3x3(
    x: Array, kernel: Array, bias: Array | None = None, *, impl: str = "auto", precision: Any = None
) -> Array:
  """3x3 convolution, stride 1, zero padding 1 ("SAME"), NHWC / HWIO (``nn.Conv2d(k=3, p=1)``):
  ``conv2d`` with a [3, 3, Cin, Cout] kernel (its implementations, shapes and errors).

  Raises:
    ValueError: unknown impl or a kernel that is not [3, 3, Cin, Cout] for x [B, H, W, Cin].
  """
  if kernel.shape[:2] != (3, 3):
    raise ValueError(f"conv3x3: kernel {kernel.shape}, want [3, 3, Cin, Cout]")
  return conv2d(x, kernel, bias, impl=impl, precision=precision)


def _conv_params(module: nn.Module, size: int, cin: int, features: int) -> tuple[Array, Array]:
  kernel = module.param("kernel", xavier_normal, (size, size, cin, features), jnp.float32)
  bias = module.param("bias", nn.initializers.zeros_init(), (features,), jnp.float32)
  return kernel, bias


class ConvParams(nn.Module):
  """Declares a conv's parameters without applying it (the layout of ``Conv3x3``/``nn.Conv``).

  Params: ``kernel`` [size, size, Cin, features] float32 Xavier-normal (MTAN init), ``bias``
  [features] float32 zeros. ``__call__(cin)`` returns ``(kernel, bias)``. Lets the model run
  several convs that read the same input as one wider conv while keeping per-conv params.
  """

  features: int
  size: int = 3

  @nn.compact
  def __call__(self, cin: int) -> tuple[Array, Array]:
    return _conv_params(self, self.size, cin, self.features)


class Conv3x3(nn.Module):
  """3x3 "SAME" convolution with bias (``nn.Conv2d(k=3, padding=1)``), params as ``ConvParams``.

  Input [B, H, W, Cin] -> output [B, H, W, features] in ``dtype`` (params stay float32).
  ``impl`` selects the implementation (``conv3x3``); it does not change the parameters.
  """

  features: int
  impl: str = "auto"
  dtype: Any = None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel, bias = _conv_params(self, 3, x.shape[-1], self.features)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    return conv3x3(x, kernel, bias, impl=self.impl)


class Conv(nn.Module):
  """K x K convolution with stride and zero padding (K // 2 by default, K odd; ``nn.Conv2d(k,
  stride, padding)``): ``flax.linen.Conv``'s parameters and initialisation, ``conv2d``'s
  implementations (and its errors).

  Params: ``kernel`` [K, K, Cin, features] float32 by ``kernel_init`` (``nn.Conv``'s default,
  LeCun normal), ``bias`` [features] float32 zeros when ``use_bias``: the same names, shapes and
  initial values as ``nn.Conv(features, (K, K), strides=stride, padding=padding)`` under the same
  key, so checkpoints and seeds carry over. Input [B, H, W, Cin] -> [B, Ho, Wo, features] in
  ``dtype``.
  """

  features: int
  kernel_size: int = 3
  stride: int = 1
  padding: int | None = None
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  impl: str = "auto"
  dtype: Any = None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    k = self.kernel_size
    kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features), jnp.float32)
    bias = None
    if self.use_bias:
      bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
    return conv2d(x, kernel, bias, stride=self.stride, padding=self.padding, impl=self.impl)


# --------------------------------------------------------------------------------------------
# BatchNorm
# --------------------------------------------------------------------------------------------


class BatchNorm(nn.Module):
  """BatchNorm over (B, H, W) per channel with PyTorch ``nn.BatchNorm2d`` semantics.

  Variables as ``flax.linen.BatchNorm``: params ``scale`` (ones), ``bias`` (zeros); batch_stats
  ``mean`` (zeros), ``var`` (ones), all [C] float32.
  Training (``use_running_average=False``): normalises with the batch mean and biased variance
  (two passes in float32: mean, then the mean of squared deviations; the one-pass
  E[x²] − E[x]² cancels catastrophically when the mean is large against the spread, as in trained
  networks' activations) and updates running = momentum * running + (1 - momentum) * batch, with
  the UNBIASED variance N/(N-1) var for ``var`` (PyTorch; N = B*H*W). ``momentum`` 0.9 here is
  PyTorch's momentum 0.1. Evaluation: uses the running averages and mutates nothing.
  The normalisation is applied as one fused multiply-add x * s + t.

  Input [B, H, W, C] -> same shape, in ``dtype`` (default: input dtype).
  """

  use_running_average: bool
  momentum: float = 0.9
  epsilon: float = 1e-5
  dtype: Any = None

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones_init(), (c,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (c,), jnp.float32)
    ra_mean = self.variable("batch_stats", "mean", lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable("batch_stats", "var", lambda: jnp.ones((c,), jnp.float32))
    if self.use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      axes = tuple(range(x.ndim - 1))
      xf = x.astype(jnp.float32)
      mean = jnp.mean(xf, axes)
      var = jnp.mean(jnp.square(xf - mean), axes)
      if not self.is_initializing():
        n = x.size // c
        m = self.momentum
        ra_mean.value = m * ra_mean.value + (1 - m) * lax.stop_gradient(mean)
        ra_var.value = m * ra_var.value + (1 - m) * lax.stop_gradient(var) * (n / max(n - 1, 1))
    mul = scale * lax.rsqrt(var + self.epsilon)
    dtype = self.dtype or x.dtype
    return x * mul.astype(dtype) + (bias - mean * mul).astype(dtype)
