"""The training state: one pytree holding everything a run updates and a checkpoint stores, and
its initialisation (`create_train_state`), replicated over the mesh. `mtjax.train` re-exports both.
"""

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from mtjax import regularizers, sharding, weighting


@flax.struct.dataclass
class TrainState:
  """The whole training state, a plain pytree (what a checkpoint holds).

  step: int32 scalar, the number of updates applied; params / batch_stats: the model's collections;
  opt_state: the optax state of `trainable(state)`, the task weighting's state included
  (`mtjax.weighting.current_weights`); reg_params: the regularizer's params (a_θ), {} without one;
  weighting_params: the task weighting's params (uncertainty's log-variances), {} for the others;
  reg_state: the regularizer's non-trainable state (RDC as released: its bank of Gaussians), {}
  for the others. Evaluation and prediction read only params and batch_stats.
  """

  step: jax.Array
  params: flax.core.FrozenDict | dict
  batch_stats: flax.core.FrozenDict | dict
  opt_state: optax.OptState
  reg_params: dict = flax.struct.field(default_factory=dict)
  weighting_params: dict = flax.struct.field(default_factory=dict)
  reg_state: dict = flax.struct.field(default_factory=dict)


def trainable(state: TrainState) -> dict:
  """What the optimizer updates: {"model": params, "regularizer": reg_params, "weighting":
  weighting_params}."""
  return {
      "model": state.params,
      "regularizer": state.reg_params,
      "weighting": state.weighting_params,
  }



def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    rng: jax.Array,
    image_shape: tuple[int, int],
    mesh: jax.sharding.Mesh,
    regularizer: regularizers.Regularizer | None = None,
    task_weighting: weighting.Weighting | None = None,
) -> TrainState:
  """Initialises parameters, BatchNorm statistics, the regularizer's and the task weighting's
  params and the optimizer, replicated over `mesh`.

  Args:
    image_shape: (H, W) of the training images.
  """

  def init(rng):
    # The model's key is the run's key itself: a run without a regularizer initialises as before.
    variables = model.init(rng, jnp.zeros((1, *image_shape, 3), jnp.float32), train=False)
    reg_params = (
        {} if regularizer is None else regularizer.init(jax.random.fold_in(rng, 1), image_shape)
    )
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=variables["params"],
        batch_stats=variables["batch_stats"],
        opt_state=None,
        reg_params=reg_params,
        weighting_params={} if task_weighting is None else task_weighting.init_params(),
        reg_state={} if regularizer is None else regularizer.init_state(),
    )
    return state.replace(opt_state=tx.init(trainable(state)))

  return jax.jit(init, out_shardings=sharding.replicated(mesh))(rng)
