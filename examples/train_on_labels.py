"""Train the Ni U-Net on your own labelled volume(s) and look at the curves.

python examples/train_on_labels.py images.zarr labels.zarr model.pt [--encoder vgg16]
"""

from __future__ import annotations

import argparse

import volseg


def main(argv: list[str] | None = None) -> volseg.TrainResult:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("images")
    parser.add_argument("labels")
    parser.add_argument("out")
    parser.add_argument("--encoder", default="vgg16")
    parser.add_argument("--encoder-weights", default=None, help="'imagenet' or a local file")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps-per-epoch", type=int, default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    result = volseg.train(
        args.images,
        args.labels,
        args.out,
        encoder=args.encoder,
        encoder_weights=args.encoder_weights,
        epochs=args.epochs,
        tile=args.tile,
        batch_size=args.batch_size,
        steps_per_epoch=args.steps_per_epoch,
        device=args.device,
        overwrite=True,
    )
    print(result.history.tail())
    print(f"best epoch {result.best_epoch}: validation Ni IoU {result.best_val_ni_iou:.4f}")
    return result


if __name__ == "__main__":
    main()
