"""A Hugging Face Mask2Former checkpoint (``Mask2FormerForUniversalSegmentation``'s or
``Mask2FormerModel``'s state dict, safetensors or ``.bin``, read from a path without network) ->
``mtjax.models.mask2former.Mask2FormerTrunk`` variables, by name.

The Swin, pixel decoder and transformer decoder keys go through their converters
(``swin_import``, ``pixel_decoder_import``, ``mask_decoder_import``); the class predictor is read
as is; the loss's buffer (``criterion.empty_weight``) is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import numpy as np

from mtjax.models import mask2former, mask_decoder_import, pixel_decoder_import
from mtjax.models import state_dict as state_dict_lib
from mtjax.models import swin_import

__all__ = ["convert_state_dict", "flax_path"]

_PARTS = (
    ("pixel_level_module.encoder.", "backbone", swin_import.flax_path),
    ("pixel_level_module.decoder.", "pixel_decoder", pixel_decoder_import.flax_path),
    ("transformer_module.", "transformer_module", mask_decoder_import.flax_path),
)


def flax_path(key: str) -> tuple[str, ...] | None:
  """The trunk's Flax parameter path of a ``Mask2FormerModel`` key (``model.`` removed), ``None``
  for what is not read, ``()`` for a key of no parameter."""
  if key.startswith("criterion."):
    return None
  if key.startswith("class_predictor."):
    return state_dict_lib.leaf_name(key, ("class_predictor",))
  for prefix, module, to_path in _PARTS:
    if key.startswith(prefix):
      path = to_path(key[len(prefix) :])
      return path if not path else (module, *path)
  return ()


def convert_state_dict(
    state_dict: Mapping[str, np.ndarray], settings: mask2former.Mask2FormerSettings
) -> dict:
  """Flax ``{"params": ...}`` of ``Mask2FormerTrunk(settings)``.

  Args:
    state_dict: a ``Mask2FormerForUniversalSegmentation`` state dict (keys ``model.…`` and
      ``class_predictor.…``) or a ``Mask2FormerModel`` one (without ``model.``; then the class
      predictor is missing and named as such).
    settings: the trunk's sizes.

  Raises:
    ValueError: keys of no parameter, parameters missing, shapes that differ.
  """
  state = {(k[len("model.") :] if k.startswith("model.") else k): v for k, v in state_dict.items()}
  images = np.zeros((1, 64, 64, 3), np.float32)
  expected = state_dict_lib.expected_shapes(
      lambda: mask2former.Mask2FormerTrunk(settings).init(jax.random.key(0), images)
  )
  return state_dict_lib.assemble(state, "", flax_path, expected, "Mask2Former")
