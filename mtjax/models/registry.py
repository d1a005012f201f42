"""The network a config names (``config.model``, ``config.compute_dtype``) and its pretrained
backbone: the one place that maps config names to model classes."""

import flax.linen as nn
import jax.numpy as jnp
import ml_collections

from mtjax import tasks
from mtjax.models import hrnet, hrnet_import, mtcp, mtcp_import, segnet

COMPUTE_DTYPES = {"float32": None, "bfloat16": jnp.bfloat16}


def create_model(config: ml_collections.ConfigDict) -> nn.Module:
  """The multi-task network of `config.model` predicting `config.tasks`, computing in
  `config.compute_dtype` ("float32" | "bfloat16": convolutions and activations in that dtype;
  parameters, optimizer state, BatchNorm statistics, outputs, losses and metrics in float32).

  The heads are `tasks.from_config(config)`'s records (channels and activation per task).

  `config.model.name`: "segnet_mtl" (`segnet.SegNetMTL`, widths `config.model.filters`) or an HRNet
  variant (`hrnet.VARIANTS`; inputs normalised with ImageNet statistics when
  `config.model.normalize_input` is "imagenet", or "auto" with a pretrained backbone), or
  "mtcp" (`mtcp.MTCP`, MT-CP's model; its sizes `config.model.mtcp`, the released ones when
  absent: `mtcp.settings_from_config`).

  Raises:
    ValueError: unknown model name, compute dtype or normalize_input.
  """
  if config.compute_dtype not in COMPUTE_DTYPES:
    raise ValueError(
        f"config.compute_dtype={config.compute_dtype!r}: expected one of {tuple(COMPUTE_DTYPES)}"
    )
  dtype = COMPUTE_DTYPES[config.compute_dtype]
  if config.model.name == "segnet_mtl":
    return segnet.SegNetMTL(
        num_classes=config.dataset.num_classes,
        tasks=tasks.from_config(config),
        filters=tuple(config.model.filters),
        conv_impl=config.model.conv_impl,
        dtype=dtype,
    )
  if config.model.name in hrnet.VARIANTS:
    normalize = config.model.normalize_input
    if normalize not in ("auto", "imagenet", "none"):
      raise ValueError(
          f"config.model.normalize_input={normalize!r}: expected 'auto', 'imagenet' or 'none'"
      )
    return hrnet.HRNetMTL(
        num_classes=config.dataset.num_classes,
        tasks=tasks.from_config(config),
        variant=config.model.name,
        normalize_input=normalize == "imagenet"
        or (normalize == "auto" and bool(config.model.pretrained)),
        dtype=dtype,
        bn_momentum=float(config.model.get("bn_momentum", 0.1)),
        fuse_upsampling=config.model.get("fuse_upsampling", "nearest"),
        conv_impl=config.model.conv_impl,
    )
  if config.model.name == "mtcp":
    return mtcp.MTCP(
        num_classes=config.dataset.num_classes,
        tasks=tasks.from_config(config),
        settings=mtcp.settings_from_config(config.model.get("mtcp")),
        normalize_input=config.model.normalize_input in ("auto", "imagenet"),
    )
  raise ValueError(
      f"config.model.name={config.model.name!r}: expected one of "
      f"{('segnet_mtl', *hrnet.VARIANTS, 'mtcp')}"
  )


def with_pretrained(
    config: ml_collections.ConfigDict, params: dict, batch_stats: dict
) -> tuple[dict, dict]:
  """(params, batch_stats) with the backbone of `config.model.pretrained` (a `hrnet_import.save`
  file, host arrays) in place of the "backbone" entries; the heads are kept. MT-CP: a converted
  Mask2Former trunk or whole released model (`mtcp_import.with_pretrained`). Unchanged when
  `config.model.pretrained` is "".

  Raises:
    ValueError: a pretrained file for a model without a pretrained backbone, or a file that does
      not hold this variant's backbone. FileNotFoundError: no such file.
  """
  if not config.model.pretrained:
    return params, batch_stats
  if config.model.name == "mtcp":
    return mtcp_import.with_pretrained(config.model.pretrained, params, batch_stats)
  if config.model.name not in hrnet.VARIANTS:
    raise ValueError(
        f"config.model.pretrained is set but config.model.name={config.model.name!r} has no "
        f"pretrained backbone (one of {(*hrnet.VARIANTS, 'mtcp')})"
    )
  backbone = hrnet_import.load(config.model.pretrained, config.model.name)
  return (
      {**params, "backbone": backbone["params"]},
      {**batch_stats, "backbone": backbone["batch_stats"]},
  )
