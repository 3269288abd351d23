"""The training layer: the engine (``fit``), precision, history and callbacks, optimizers, the LR range test,
checkpoints, torchrun and the default recipe. Its names of eva_utils 0.1.0 are re-exported here
(``eva_utils.training.X`` keeps working)."""

from eva_utils.core.devices import resolve_device
from eva_utils.training.engine import TrainingDivergedError, evaluate, fit, multi_exit_loss, train_one_epoch
from eva_utils.training.history import Callback, EpochStats, History
from eva_utils.training.lr_finder import LRFinderResult, find_lr
from eva_utils.training.optim import OPTIMIZERS, SCHEDULERS, lr_schedule, make_optimizer, make_scheduler, set_seed
from eva_utils.training.precision import Precision, amp_dtype, mixed_precision

__all__ = [
    "OPTIMIZERS", "SCHEDULERS", "EpochStats", "Precision", "History", "LRFinderResult", "TrainingDivergedError", "Callback",
    "amp_dtype", "evaluate", "find_lr", "fit", "make_optimizer", "lr_schedule", "make_scheduler", "mixed_precision",
    "multi_exit_loss", "resolve_device", "set_seed", "train_one_epoch",
]
