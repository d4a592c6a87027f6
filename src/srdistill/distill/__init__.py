"""Distillation: matched boundaries, the methods (mipkd, logits, fitnet, fakd, scratch) and the
mixers they own; ``distill()`` runs one on the training engine."""

from .boundaries import Boundary, BoundaryError, match_boundaries
from .spec import DistillContext, MethodSpec

__all__ = ["Boundary", "BoundaryError", "DistillContext", "MethodSpec", "match_boundaries"]
