"""MT-CP's Loss Prioritization Scheme (Fontana et al., WACV 2025) chained to your own optimizer.

``mtjax.weighting.loss_prioritization`` is an Optax transform: chain it after your optimizer and
its state (the epoch means of each task's loss, the current weights) lives in your optimizer
state, so it is checkpointed with it. Each step, read the weights with
``weighting.current_weights(opt_state)``, weight the task losses with them, and hand the step's
per-task losses to ``tx.update`` (``task_losses``, ``task_counts``: the examples labelled per task).

    python examples/lps_with_your_optimizer.py [--epochs 6]

A toy problem with three tasks, one of which learns slowly; LPS raises that task's weight.
"""

import argparse

import jax
import jax.numpy as jnp
import optax

from mtjax import weighting


def main(argv=None) -> list[list[float]]:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=6, help="epochs of 5 steps (default 6)")
  args = parser.parse_args(argv)

  steps_per_epoch, num_tasks = 5, 3
  # Task t fits a target with learning speed speeds[t]: task 2 is the slow one.
  targets = jnp.array([1.0, -2.0, 3.0])
  speeds = jnp.array([1.0, 1.0, 0.05])
  params = {"theta": jnp.zeros(num_tasks)}
  tx = optax.chain(
      optax.sgd(0.1),
      weighting.loss_prioritization(
          num_tasks, spread=2.5, history=1, steps_per_epoch=steps_per_epoch
      ),
  )
  opt_state = tx.init(params)

  def task_losses_fn(p):
    return jnp.square(speeds * (p["theta"] - targets))  # ℓ_t, one per task.

  @jax.jit
  def train_step(params, opt_state):
    weights = weighting.current_weights(opt_state)  # Constants of the step.

    def loss_fn(p):
      losses = task_losses_fn(p)
      # MT-CP Eq. 3 and 7: Σ_t w_t log(ℓ_t + 1 + η).
      return jnp.sum(weights * weighting.project(losses, log_scale=True)), losses

    grads, losses = jax.grad(loss_fn, has_aux=True)(params)
    updates, opt_state = tx.update(
        grads, opt_state, params, task_losses=losses, task_counts=jnp.ones(num_tasks)
    )
    return optax.apply_updates(params, updates), opt_state

  history = []
  for epoch in range(args.epochs):
    for _ in range(steps_per_epoch):
      params, opt_state = train_step(params, opt_state)
    weights = [float(w) for w in weighting.current_weights(opt_state)]
    history.append(weights)
    print(f"after epoch {epoch}: weights " + " ".join(f"{w:.3f}" for w in weights))
  return history


if __name__ == "__main__":
  main()
