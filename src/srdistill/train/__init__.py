"""The training engine: configuration, the step loop, checkpoints/resume, torchrun DDP.

    from srdistill.train import TrainConfig, train
    result = train(TrainConfig(arch="edsr-lite", data="photos/", steps=1000))

Distillation methods plug in through :class:`Objective` (named loss terms, extra trainable
modules, frozen models); see :mod:`srdistill.train.objective`.
"""


# Names load on first use (PEP 562): ``config`` and ``progress`` are plain Python that
# `srdistill train --help` reads, while ``loop`` and ``objective`` import torch (seconds). The
# imports are spelled out, not looked up by string, so the import-direction test still sees them.
def __getattr__(name: str):
    if name in ("TrainConfig", "build_config"):
        from . import config as module
    elif name in ("TrainingDiverged", "TrainResult", "train"):
        from . import loop as module
    elif name in ("Batch", "Objective", "Supervised", "TrainingData"):
        from . import objective as module
    elif name in ("StepReport", "TrainCallback"):
        from . import progress as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = globals()[name] = getattr(module, name)
    return value


__all__ = [
    "Batch",
    "Objective",
    "StepReport",
    "Supervised",
    "TrainCallback",
    "TrainConfig",
    "TrainResult",
    "TrainingData",
    "TrainingDiverged",
    "build_config",
    "train",
]
