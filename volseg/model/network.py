"""The network: a segmentation-models-pytorch U-Net built from a model configuration.

Optionally with pretrained encoder weights: ``encoder_weights=None | "imagenet" | path``,
where a local file (for example torchvision's ``vgg16-397923af.pth``) has its classifier
dropped and a 3-channel first convolution summed to the model's one grey channel; for a
model with through-plane context that grey kernel is the centre slice's and the
neighbouring slices' kernels start at zero (the encoder starts as the single-slice one).

>>> from volseg.model.config import default_config
>>> build_unet(default_config(encoder="resnet18")).training
False
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import segmentation_models_pytorch as smp
import torch

from .config import validate_config

__all__ = ["build_unet", "encoder_names"]


def encoder_names() -> list[str]:
    """The encoder names segmentation-models-pytorch knows (``tu-<timm name>`` aside).

    Examples
    --------
    >>> {"vgg16", "resnet18"} <= set(encoder_names())
    True
    """
    return list(smp.encoders.get_encoder_names())


def build_unet(
    config: dict[str, Any], encoder_weights: str | os.PathLike | None = None
) -> torch.nn.Module:
    """Build the segmentation network described by ``config``.

    Parameters
    ----------
    config : dict
        A configuration from :func:`default_config` or a checkpoint.
    encoder_weights : None, "imagenet" or path
        ``None``: random initialisation. ``"imagenet"``: the encoder's ImageNet
        weights, downloaded by segmentation-models-pytorch (needs the network).
        A path: a local file with the encoder's state dict (for example
        torchvision's ``vgg16-397923af.pth``); classifier weights in it are
        ignored and a 3-channel first convolution is summed to one grey channel.
        With through-plane context (``config["context"] = k``) the grey kernel
        goes to the centre slice's channel and the ``2k`` neighbouring slices'
        kernels start at zero, so the encoder starts out computing what the
        single-slice encoder computes and learns what the neighbours add.
        (``"imagenet"`` leaves the first convolution to segmentation-models-pytorch.)

    Returns
    -------
    torch.nn.Module
        ``segmentation_models_pytorch.Unet`` in eval mode.

    Examples
    --------
    >>> from volseg.model import default_config
    >>> cfg = default_config(encoder="resnet18", encoder_depth=3, decoder_channels=[32, 16, 8])
    >>> net = build_unet(cfg)
    >>> net(torch.zeros(1, 1, 64, 64)).shape
    torch.Size([1, 1, 64, 64])
    """
    validate_config(config)
    encoder = config["encoder"]
    if encoder not in encoder_names() and not str(encoder).startswith("tu-"):
        raise ValueError(
            f"encoder {encoder!r} is not a segmentation-models-pytorch encoder; "
            "use for example 'vgg16', 'resnet18', 'resnet50' or a 'tu-<timm name>'."
        )
    weights_file = None
    smp_weights = None
    if encoder_weights is not None:
        if str(encoder_weights) == "imagenet":
            smp_weights = "imagenet"
        else:
            weights_file = Path(encoder_weights)
            if not weights_file.is_file():
                raise FileNotFoundError(
                    f"encoder weights file {str(weights_file)!r} does not exist; "
                    "give a local encoder state dict, 'imagenet', or None."
                )
    net = smp.Unet(
        encoder_name=encoder,
        encoder_weights=smp_weights,
        encoder_depth=int(config["encoder_depth"]),
        decoder_channels=list(config["decoder_channels"]),
        in_channels=int(config["in_channels"]),
        classes=int(config["classes"]),
    )
    if weights_file is not None:
        _load_encoder_file(net.encoder, weights_file, int(config.get("context", 0)))
    return net.eval()


def _grey_first_conv(value: torch.Tensor, channels: int, context: int) -> torch.Tensor:
    """An RGB first-convolution kernel ``(O, 3, h, w)`` for ``channels`` grey inputs.

    Summed over RGB (a grey image is R = G = B); with through-plane context the sum is
    the centre slice's kernel and the neighbours' kernels are zero.
    """
    grey = value.sum(dim=1, keepdim=True)
    if not context:
        return grey
    kernel = torch.zeros(value.shape[0], channels, *value.shape[2:], dtype=value.dtype)
    kernel[:, context : context + 1] = grey
    return kernel


def _load_encoder_file(encoder: torch.nn.Module, path: Path, context: int = 0) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(
            f"encoder weights file {str(path)!r} could not be read as a state dict ({exc})."
        ) from exc
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    own = encoder.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(("classifier.", "fc."))}
    channels = 2 * context + 1  # grey input channels: the slice and its neighbours
    for key, value in state.items():
        target = own.get(key)
        if (
            target is not None
            and value.ndim == 4
            and target.ndim == 4
            and value.shape[1] == 3
            and target.shape[1] == channels
        ):
            # RGB first conv -> grey (centre slice of a context model)
            state[key] = _grey_first_conv(value, channels, context)
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        raise ValueError(
            f"encoder weights file {str(path)!r} does not fit encoder "
            f"({len(missing)} missing keys e.g. {missing[:3]}, "
            f"{len(unexpected)} unexpected e.g. {unexpected[:3]})."
        )
    encoder.load_state_dict(state)
