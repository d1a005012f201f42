"""The run's random streams (mtjax/seeds.py): one per purpose, none shared across neighbouring seeds."""

import itertools

import jax
import numpy as np
import pytest

from configs import demo
from mtjax import seeds, train


def _data(key):
  return tuple(np.asarray(jax.random.key_data(key)).ravel().tolist())


def test_streams_of_neighbouring_seeds_and_purposes_all_differ():
  streams = {
      (seed, purpose): _data(seeds.stream_key(seed, purpose))
      for seed in range(6)
      for purpose in seeds.PURPOSES
  }
  assert len(set(streams.values())) == len(streams)
  # Not the plain seed keys either: seed s's training key is not key(s + 1), as it was.
  plain = {_data(jax.random.key(s)) for s in range(8)}
  assert not plain & set(streams.values())
  ints = {(s, p): seeds.stream_seed(s, p) for s, p in itertools.product(range(6), seeds.PURPOSES)}
  assert len(set(ints.values())) == len(ints)
  assert all(0 <= v < 2**63 for v in ints.values())


def test_streams_are_fold_in_of_the_root_key_and_deterministic():
  for i, purpose in enumerate(seeds.PURPOSES):
    expected = jax.random.fold_in(jax.random.key(3), i)
    assert _data(seeds.stream_key(3, purpose)) == _data(expected)
  assert seeds.stream_seed(7, "data") == seeds.stream_seed(7, "data")


def test_training_uses_the_train_stream_not_the_next_seeds_init():
  config = demo.get_config()
  config.seed = 4
  step = train.bound_train_step(config, model=None, tx=None, regularizer=None, task_weighting=None)
  assert _data(step.keywords["rng"]) == _data(seeds.stream_key(4, "train"))
  assert _data(step.keywords["rng"]) != _data(seeds.stream_key(5, "init"))


@pytest.mark.parametrize(
    "seed, purpose, error",
    [(0, "dropout", ValueError), (1.5, "init", TypeError), (True, "data", TypeError)],
)
def test_bad_purpose_or_seed(seed, purpose, error):
  with pytest.raises(error, match="expected"):
    seeds.stream_key(seed, purpose)
