"""Distillation: matched boundaries, the methods (mipkd, logits, fitnet, fakd, scratch) and the
mixers they own; ``distill()`` runs one on the training engine."""

from .boundaries import Boundary, BoundaryError, match_boundaries
from .spec import DistillContext, MethodSpec
from .api import distill, plan_distillation  # noqa: E402  (api needs the two modules above)

__all__ = ["Boundary", "BoundaryError", "DistillContext", "MethodSpec", "distill", "match_boundaries", "plan_distillation"]
