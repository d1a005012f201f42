"""Converts PyTorch checkpoints to mtjax's variables (msgpack): an ImageNet-pretrained HRNet
backbone, a Hugging Face Mask2Former (MT-CP's trunk), or a released MT-CP model.

    python tools/convert_torch_weights.py hrnetv2_w18_imagenet_pretrained.pth hrnet_w18.msgpack
    python tools/convert_torch_weights.py model.safetensors hrnet_w18_small_v2.msgpack \
        --variant hrnet_w18_small_v2
    python tools/convert_torch_weights.py mask2former-swin-small-ade-semantic/model.safetensors \
        trunk.msgpack --variant mask2former
    python tools/convert_torch_weights.py checkpoint.pth.tar mtcp_nyud.msgpack --variant mtcp_nyud

Then train with ``--config.model.pretrained=FILE`` (configs/nyud_hrnet18.py,
configs/nyudmt_mtcp.py). HRNet: timm's state dicts (.pth / .bin / .safetensors) and
HRNet-Image-Classification's .pth; the classification head is skipped
(``mtjax.models.hrnet_import``). ``mask2former``: a ``Mask2FormerForUniversalSegmentation``
checkpoint (``mtjax.models.mask2former_import``), sized as ``--config``'s ``model.mtcp``.
``mtcp_nyud`` / ``mtcp_pascal``: the state dict the released MT-CP training saves
(``checkpoint.pth.tar``, ``best_model.pth.tar``) -> the whole model of ``--config``
(``mtjax.models.mtcp_import``; what the released forward never uses is skipped). Anything else
that does not map is an error naming the keys. .safetensors needs no torch; .pth / .bin / .tar
need torch (``pip install -e ".[convert]"``).
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import jax

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mtjax import fileio  # noqa: E402  pylint: disable=g-import-not-at-top
from mtjax.models import hrnet, hrnet_import  # noqa: E402  pylint: disable=g-import-not-at-top

# The MT-CP variants: the config whose model.mtcp gives the sizes by default.
_MTCP = {
    "mask2former": "configs/nyudmt_mtcp.py",
    "mtcp_nyud": "configs/nyudmt_mtcp.py",
    "mtcp_pascal": "configs/pascal_context_mtcp.py",
}


def _load_config(path):
  """``get_config()`` of a config file."""
  spec = importlib.util.spec_from_file_location("convert_config", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def _convert_mtcp(state, variant, config_path):
  """The trunk's or the whole MT-CP's variables from ``state``, sized by ``config_path``."""
  from mtjax.models import mask2former_import, mtcp_import, registry  # pylint: disable=g-import-not-at-top

  config = _load_config(config_path or str(Path(__file__).resolve().parents[1] / _MTCP[variant]))
  model = registry.create_model(config)
  if variant == "mask2former":
    return mask2former_import.convert_state_dict(state, model.settings.trunk)
  return mtcp_import.convert_state_dict(state, model, variant.removeprefix("mtcp_"))


def main(argv: list[str] | None = None) -> int:
  p = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  p.add_argument("src", help="PyTorch checkpoint (.pth, .pt, .bin, .safetensors; local or gs://)")
  p.add_argument(
      "dst", help="msgpack file to write, local or gs:// (refused if it exists, unless --force)"
  )
  p.add_argument("--variant", default="hrnet_w18", choices=(*hrnet.VARIANTS, *_MTCP))
  p.add_argument(
      "--config",
      default="",
      help="MT-CP variants: the config giving the sizes (default: the variant's released config)",
  )
  p.add_argument("--force", action="store_true")
  args = p.parse_args(argv)
  if fileio.as_path(args.dst).exists() and not args.force:
    print(f"convert_torch_weights: error: {args.dst} exists; pass --force", file=sys.stderr)
    return 2
  try:
    state = hrnet_import.read_state_dict(args.src)
    if args.variant in _MTCP:
      variables = _convert_mtcp(state, args.variant, args.config)
    else:
      variables = hrnet_import.convert_state_dict(state, args.variant)
  except (FileNotFoundError, ValueError, ImportError) as e:
    print(f"convert_torch_weights: error: {e}", file=sys.stderr)
    return 2
  hrnet_import.save(variables, args.dst)
  count = sum(v.size for v in jax.tree.leaves(variables["params"]))
  print(f"wrote {args.dst}: {args.variant}, {count:,} parameters")
  return 0


if __name__ == "__main__":
  sys.exit(main())
