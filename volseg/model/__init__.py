"""The model: configuration, network, checkpoints, devices, precision and runtimes.

One job per module; every name is imported on first use (PEP 562), so that
``import volseg.model.config`` (or the precision and backend choices) does not
load torch:

- :mod:`~volseg.model.config`: the checkpoint format and the model configuration
  (defaults, checks, phases, context); no torch.
- :mod:`~volseg.model.normalisation`: fixed intensity normalisation; numpy only.
- :mod:`~volseg.model.device`: the one parser of device names.
- :mod:`~volseg.model.network`: the segmentation-models-pytorch U-Net, pretrained encoders.
- :mod:`~volseg.model.checkpoint`: save, update and load checkpoints (``weights_only``).
- :mod:`~volseg.model.predict`: the torch tile predictor and the per-process model cache.
- :mod:`~volseg.model.precision`, :mod:`~volseg.model.backend`: what ``"auto"`` means here.
- :mod:`~volseg.model.export`: the ONNX export, cached beside the checkpoint.
- :mod:`~volseg.model.runtimes`: OpenVINO and ONNX Runtime predictors, the predictor cache.

>>> import volseg.model
>>> volseg.model.default_config()["encoder"]
'vgg16'
"""

from __future__ import annotations

from volseg._lazy import attach

# public name -> the submodule that defines it (a submodule maps to itself)
_LAZY: dict[str, str] = {
    "config": "config",
    "normalisation": "normalisation",
    "device": "device",
    "network": "network",
    "checkpoint": "checkpoint",
    "predict": "predict",
    "precision": "precision",
    "backend": "backend",
    "export": "export",
    "runtimes": "runtimes",
    "ARCHS": "config",
    "BINARY_LABELS": "config",
    "CHECKPOINT_FORMAT": "config",
    "DECODER_CHANNELS": "config",
    "DEFAULT_ENCODER": "config",
    "DEFAULT_ENCODER_DEPTH": "config",
    "DEFAULT_PHASES": "config",
    "DEFAULT_TILE": "config",
    "default_config": "config",
    "default_decoder_channels": "config",
    "model_context": "config",
    "model_phases": "config",
    "validate_config": "config",
    "fit_normalisation": "normalisation",
    "normalise": "normalisation",
    "as_device": "device",
    "parse_device": "device",
    "resolve_device": "device",
    "build_unet": "network",
    "encoder_names": "network",
    "LoadedModel": "checkpoint",
    "file_sha256": "checkpoint",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "update_training": "checkpoint",
    "AUTOCAST_DTYPES": "predict",
    "TilePredictor": "predict",
    "cached_model": "predict",
    "models_in_cache": "predict",
    "BF16_FLAGS": "precision",
    "OPENVINO_CAPABILITY": "precision",
    "OPENVINO_PRECISION": "precision",
    "PRECISIONS": "precision",
    "cpu_flags": "precision",
    "cpu_supports_bf16": "precision",
    "openvino_cpu_capabilities": "precision",
    "openvino_precision_error": "precision",
    "resolve_precision": "precision",
    "BACKENDS": "backend",
    "EXTRAS": "backend",
    "backend_available": "backend",
    "resolve_backend": "backend",
    "ONNX_OPSET": "export",
    "export_bytes": "export",
    "export_onnx": "export",
    "load_onnx": "export",
    "onnx_cache_path": "export",
    "OnnxRuntimePredictor": "runtimes",
    "OpenVINOPredictor": "runtimes",
    "PREDICTORS": "runtimes",
    "cached_predictor": "runtimes",
    "read_onnx_bytes": "runtimes",
}

__getattr__, __dir__, __all__ = attach(__name__, _LAZY)
