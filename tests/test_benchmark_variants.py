"""tools/benchmark_variants.py: variant parsing, and a config timed against a variant of it."""

import pytest

from tests.test_train import tiny_config
from tools import benchmark_variants as bv


def test_parse_variant():
  assert bv.parse_variant("sup: regularizer.name='none', batch_size=4") == (
      "sup",
      {"regularizer.name": "none", "batch_size": 4},
  )
  assert bv.parse_variant("same:") == ("same", {})
  for bad, match in (
      ("no colon", "name: key=value"),
      ("x: a", "not key=value"),
      ("x: a=b", "quote"),
  ):
    with pytest.raises(ValueError, match=match):
      bv.parse_variant(bad)


def test_compare_times_the_config_and_its_variants(data_dir):
  config = tiny_config(data_dir)
  config.steps_per_call = 2
  lines = []
  times = bv.compare(
      config, [bv.parse_variant("narrow: model.filters=(4, 4, 8, 8, 8)")], 1, lines.append
  )
  assert set(times) == {"config", "narrow"} and all(
      len(t) == 1 and t[0] > 0 for t in times.values()
  )
  assert any("narrow: built" in line for line in lines)
  with pytest.raises(KeyError):
    bv.compare(config, [("bad", {"model.no_such_field": 1})], 1, lines.append)
