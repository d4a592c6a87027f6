"""Distillation: matched boundaries, the methods (mipkd, logits, fitnet, fakd, scratch) and the
mixers they own; ``distill()`` runs one on the training engine."""


# Names load on first use (PEP 562): ``spec``, ``registry`` and ``settings`` are plain Python that
# `srdistill distill --help` reads, while ``api`` and ``boundaries`` import torch (seconds). The
# imports are spelled out, not looked up by string, so the import-direction test still sees them.
def __getattr__(name: str):
    if name in ("Boundary", "BoundaryError", "match_boundaries"):
        from . import boundaries as module
    elif name in ("DistillContext", "MethodSpec"):
        from . import spec as module
    elif name in ("distill", "plan_distillation"):
        from . import api as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = getattr(module, name)
    return value


__all__ = ["Boundary", "BoundaryError", "DistillContext", "MethodSpec", "distill", "match_boundaries", "plan_distillation"]
