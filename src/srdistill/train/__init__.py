"""The training engine: configuration, the step loop, checkpoints/resume, torchrun DDP.

    from srdistill.train import TrainConfig, train
    result = train(TrainConfig(arch="edsr-lite", data="photos/", steps=1000))

Distillation methods plug in through :class:`Objective` (named loss terms, extra trainable
modules, frozen models); see :mod:`srdistill.train.objective`.
"""

from .config import TrainConfig, build_config
from .loop import TrainingDiverged, TrainResult, train
from .objective import Batch, Objective, Supervised, TrainingData
from .progress import StepReport, TrainCallback

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
