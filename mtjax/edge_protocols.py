"""Boundary-evaluation protocols: the thresholds, matching radius and map preprocessing of each
published edge evaluation (MTI-Net / MT-CP, SEISM as InvPT / ATRC run it). ``mtjax.edge_metrics``
evaluates with them; tags as there.
"""

import dataclasses
import math

import numpy as np

# 0.01)) and SEISM parses them (str2double): the nearest doubles to the decimal literals. Equal to
# pyEdgeEval's ``thresholds=99`` (linspace(1/100, 99/100, 99)) up to rounding.
MTI_THRESHOLDS = tuple(float(f"{k / 100:.2f}") for k in range(1, 100))
# SEISM ``parameters/HED.txt`` (101 values), used by BDET ``pr_curves_base.m``.
HED_THRESHOLDS = (0.001,) + MTI_THRESHOLDS + (0.999,)

# maxDist (fraction of the image diagonal) by database, SEISM ``src/scripts/eval_method.m``.
MAX_DIST_NYUD = 0.011
MAX_DIST_PASCAL = 0.0075


@dataclasses.dataclass(frozen=True)
class EdgeProtocol:
  """One boundary-evaluation protocol: what is done to the maps before BSDS matching.

  Attributes:
    name: key in ``PROTOCOLS``.
    max_dist: matching radius as a fraction of the image diagonal (SEISM ``maxDist``), > 0.
    thresholds: strictly increasing thresholds in [0, 1] on the (NMS'd) edge strength.
    nms: Piotr / SEISM NMS on the raw map with orientation from ``convTri(E, 4)`` gradients, as
      SEISM ``read_one_cont_png.m`` (BDET copy).
    strict: binarize with ``E > t`` (SEISM read_one_cont_png), else ``E >= t`` (MTI read_one_png).
    thin_prediction: ``bwmorph(B, 'thin', Inf)`` on each binary prediction (edgesEvalImg
      ``thin=1``).
    thin_gt: the same thinning on the gt boundary map (edgesEvalImg thins ``seg2bmap(G)``).
    quantize: ``floor(p * 255) / 255`` first, as the uint8 png SEISM and MTI read.
  """

  name: str
  max_dist: float
  thresholds: tuple[float, ...]
  nms: bool
  strict: bool
  thin_prediction: bool = True
  thin_gt: bool = True
  quantize: bool = True

  def __post_init__(self):
    t = np.asarray(self.thresholds, np.float64)
    if not (isinstance(self.max_dist, (int, float)) and math.isfinite(self.max_dist)
            and self.max_dist > 0):
      raise ValueError(f"EdgeProtocol {self.name!r}: max_dist must be a finite float > 0 "
                       f"(fraction of the image diagonal), got {self.max_dist!r}")
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)) or np.any(t < 0) or np.any(t > 1):
      raise ValueError(f"EdgeProtocol {self.name!r}: thresholds must be a non-empty sequence of "
                       f"floats in [0, 1], got {self.thresholds!r}")
    if np.any(np.diff(t) <= 0):
      raise ValueError(f"EdgeProtocol {self.name!r}: thresholds must be strictly increasing")


PROTOCOLS: dict[str, EdgeProtocol] = {
    # MTI-Net (Vandenhende et al., ECCV 2020) and MT-CP: [MTI] evaluation/eval_edge.py writes
    # thresholds 0.01..0.99, evaluation/seism/read_one_png.m = double(png)/255 >= t, no NMS;
    # SEISM edgesEvalImg thins the prediction and seg2bmap(gt); maxDist 0.011 for NYUD
    # (eval_method.m). MT-CP's NYUD script still names database 'PASCALContext' (maxDist 0.0075,
    # PASCAL gt) with edge evaluation off: this is the protocol MT-CP's code would run if fixed.
    "mtinet_nyud": EdgeProtocol(
        name="mtinet_nyud", max_dist=MAX_DIST_NYUD, thresholds=MTI_THRESHOLDS, nms=False,
        strict=False),
    # The same for PASCAL-Context (maxDist 0.0075, eval_method.m 'PASCALContext'): MTI-Net's
    # PASCAL odsF (its eval_edge.py evaluates PASCALContext only).
    "mtinet_pascal": EdgeProtocol(
        name="mtinet_pascal", max_dist=MAX_DIST_PASCAL, thresholds=MTI_THRESHOLDS, nms=False,
        strict=False),
    # InvPT (Ye & Xu, ECCV 2022), TaskPrompter (ICLR 2023), DMTL via BDET: SEISM with HED's 101
    # thresholds (pr_curves_base.m), read_one_cont_png (NMS, E > t), maxDist 0.011 (NYUD).
    # InvPT README: "identical to ATRC and ASTMT". Use it to compare with their NYUD odsF (78.10).
    "seism_nyud": EdgeProtocol(
        name="seism_nyud", max_dist=MAX_DIST_NYUD, thresholds=HED_THRESHOLDS, nms=True,
        strict=True),
    # The same for PASCAL-Context (maxDist 0.0075); InvPT's PASCAL odsF 73.00 is on test_new.
    "seism_pascal": EdgeProtocol(
        name="seism_pascal", max_dist=MAX_DIST_PASCAL, thresholds=HED_THRESHOLDS, nms=True,
        strict=True),
}

# Default for an edge task: the MTI-Net / MT-CP variant. MT-CP is this project's seed and its
# evaluation code is MTI-Net's, so its numbers (and the multi-task baselines it compares with, run
# through the same code) use 99 thresholds without NMS; it is also the cheaper protocol. Use
# "seism_*" to compare with the InvPT / TaskPrompter / ATRC tables.
DEFAULT_PROTOCOL = "mtinet_nyud"
DEFAULT_PROTOCOLS_BY_DATASET = {"nyud": "mtinet_nyud", "pascal": "mtinet_pascal"}


def get_protocol(protocol):
  """Returns the ``EdgeProtocol`` for a protocol or its ``PROTOCOLS`` name.

  Args:
    protocol: an ``EdgeProtocol`` (returned as is) or a key of ``PROTOCOLS``.

  Returns:
    ``EdgeProtocol``.

  Raises:
    ValueError: an unknown name or a value of another type.
  """
  if isinstance(protocol, EdgeProtocol):
    return protocol
  if isinstance(protocol, str):
    if protocol not in PROTOCOLS:
      raise ValueError(f"unknown edge protocol {protocol!r}; expected one of {sorted(PROTOCOLS)}")
    return PROTOCOLS[protocol]
  raise ValueError(f"protocol must be an EdgeProtocol or a name in {sorted(PROTOCOLS)}, "
                   f"got {type(protocol).__name__}")
