"""The random streams of a run: one root key from ``config.seed``, one stream per purpose.

Every source of randomness of a training run derives from ``jax.random.key(config.seed)`` by
``jax.random.fold_in`` with the purpose's fixed index (``PURPOSES``):

=============== ==================================================================================
``init``        model, regularizer and task-weighting parameters (``train.create_train_state``)
``train``       the train step's key (dropout, Gumbel-softmax samples, pixel sampling), folded
                with the step number inside the step
``data``        the tf.data pipeline: epoch permutations and augmentations (an integer seed,
                ``stream_seed``)
``labels``      the generated label settings (``onelabel`` / ``randomlabels``; an integer seed)
``regions``     region sources that draw at random (none of the shipped ones does yet)
=============== ==================================================================================

So no two purposes share a stream, and no purpose of seed s shares one with any purpose of seed
s + 1 (as ``key(seed)`` for init and ``key(seed + 1)`` for training would: seed s's training key
would be seed s + 1's init key). ``fold_in`` hashes (key, data) with threefry, so the streams of
different (seed, purpose) pairs are independent for every practical purpose.
"""

from __future__ import annotations

import jax
import numpy as np

PURPOSES = ("init", "train", "data", "labels", "regions")


def stream_key(seed: int, purpose: str) -> jax.Array:
  """The key of ``purpose`` for run seed ``seed``: ``fold_in(key(seed), PURPOSES.index(purpose))``.

  Args:
    seed: the run's ``config.seed`` (a Python int).
    purpose: one of ``PURPOSES``.

  Returns:
    A typed PRNG key (``jax.random.key``), scalar.

  Raises:
    ValueError: ``purpose`` not in ``PURPOSES``.
    TypeError: ``seed`` not an integer.
  """
  if purpose not in PURPOSES:
    raise ValueError(f"random stream purpose {purpose!r}: expected one of {PURPOSES}")
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
    raise TypeError(f"seed {seed!r}: expected an integer (config.seed)")
  return jax.random.fold_in(jax.random.key(int(seed)), PURPOSES.index(purpose))


def stream_seed(seed: int, purpose: str) -> int:
  """The integer seed of ``purpose`` for consumers outside JAX (tf.data's stateless ops, NumPy's
  ``default_rng``): the stream's key data read as one non-negative int in [0, 2**63).

  Raises:
    ValueError, TypeError: as ``stream_key``.
  """
  hi, lo = (int(x) for x in np.asarray(jax.random.key_data(stream_key(seed, purpose))).ravel()[:2])
  return ((hi & 0x7FFFFFFF) << 32) | lo
