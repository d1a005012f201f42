"""Models: SegNet-MTL (MTAN / MTPSL) and its layers (see DATA_AND_METRICS.md)."""

from mtjax.models.segnet import SegNetMTL

__all__ = ["SegNetMTL"]
