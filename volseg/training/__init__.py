"""Training: fine-tune the U-Net on labelled volumes (:func:`train`).

One job per module: ``settings`` (the parameters of a run, no torch), ``data``
(image/label pairs and their split), ``crops`` (training crops and validation
tiles), ``augment``, ``losses``, ``optim`` (AdamW, schedule, clipping, moving
average, BatchNorm freezing), ``loop`` (epochs, validation, early stopping),
``state`` (result, resumable state, history) and ``api`` (:func:`train`). Names are
imported on first use, so ``import volseg.training.settings`` loads no torch.

>>> from volseg.training import TrainSettings
>>> TrainSettings(epochs=3).epochs
3
"""

from __future__ import annotations

from .._lazy import attach

# public name -> the submodule that defines it (a module name maps to itself)
_LAZY: dict[str, str] = {
    "BINARY_LOSSES": "settings",
    "CACHE_BYTES": "data",
    "Crops": "crops",
    "EarlyStopping": "loop",
    "LOSSES": "settings",
    "MULTICLASS_LOSSES": "settings",
    "SMALL_BATCH": "settings",
    "TRAIN_STATE_FORMAT": "state",
    "TrainResult": "state",
    "TrainSettings": "settings",
    "TrainingPair": "data",
    "TrainingRun": "loop",
    "WeightEMA": "optim",
    "adamw": "optim",
    "augment": "augment",
    "check_phases": "settings",
    "check_phases_present": "data",
    "clip_gradients": "optim",
    "crops": "crops",
    "data": "data",
    "evaluate": "loop",
    "fit": "loop",
    "freeze_batchnorm": "optim",
    "freeze_encoder_parameters": "optim",
    "history_paths": "state",  # compatibility: volseg.conventions.history_paths
    "load_state": "state",
    "loop": "loop",
    "loss_fn": "losses",
    "loss_for": "settings",
    "losses": "losses",
    "multiclass_loss": "losses",
    "open_pairs": "data",
    "optim": "optim",
    "parse_duration": "settings",
    "read_crop": "crops",
    "read_planes": "crops",
    "save_state": "state",
    "settings": "settings",
    "sparse_split": "data",
    "state": "state",
    "state_path": "state",
    "api": "api",
    "train": "api",
    "training_phases": "data",
    "warmup_cosine": "optim",
    "write_history": "state",
}

__getattr__, __dir__, __all__ = attach(__name__, _LAZY)
