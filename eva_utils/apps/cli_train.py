"""``eva-utils train`` and ``eva-utils demo``: a training run from the command line.

    eva-utils demo                                   # offline, CPU, bundled CIFAR-10 sample
    eva-utils train --epochs 20 --out runs/r18       # the default recipe on full CIFAR-10
    eva-utils train --resume --out runs/r18          # continue runs/r18/checkpoint.pt
    eva-utils train --recipe page24 --lr find        # Page's custom ResNet, its peak lr from the LR range test
    eva-utils train --nproc 2 --device cpu ...       # two processes (torchrun's), gloo on the CPU
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eva_utils.apps.argtypes import Parser, non_negative_int, positive_float, positive_int
from eva_utils.apps.runs import run_training
from eva_utils.core.errors import unknown_name
from eva_utils.core.files import atomic_copy, claim_output_folder
from eva_utils.training import distributed
from eva_utils.training.recipe import RECIPES, TrainConfig, TrainResult, check_output_folder

__all__ = ["add_demo_parser", "add_train_parser"]

TRAIN_DESCRIPTION = "Train a ResNet on CIFAR-10; writes history.json, checkpoint.pt and curves.png into --out."

FIGURES = ("misclassified.png", "confusion_matrix.png", "gradcam_layers.png", "curves.png", "samples.png")
"""What ``demo --figures DIR`` copies into DIR (the shipped model's figures and the augmented samples)."""


def lr_or_find(text: str) -> float | str:
    """``--lr``: a positive number, or ``find`` (the LR range test picks the peak)."""
    return "find" if text.strip().lower() == "find" else positive_float(text)


def _model_and_data(p: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    g = p.add_argument_group("model and data")
    g.add_argument("--model", default=defaults.model, help="resnet18, resnet34, custom_resnet (Page's, of --recipe page24) "
                   "or msdnet (10 exits) (default %(default)s)")
    g.add_argument("--width", type=positive_int, default=defaults.width,
                   help="channels of the first stage (default %(default)s; 16 for CPU)")
    g.add_argument("--data", default=defaults.data,
                   help="cifar10 (downloads), sample (bundled, offline) or a path to an .npz file with "
                        "train_images/train_labels (uint8 HWC RGB) and optionally test_images/test_labels, classes "
                        "(default %(default)s)")
    g.add_argument("--data-dir", default=defaults.data_dir, help="where CIFAR-10 is or goes (default %(default)s)")
    g.add_argument("--no-download", dest="download", action="store_false", default=defaults.download,
                   help="fail instead of downloading CIFAR-10")


def _training(p: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=positive_int, default=defaults.epochs, help="default %(default)s")
    g.add_argument("--batch-size", type=positive_int, default=defaults.batch_size, help="default %(default)s")
    g.add_argument("--optimizer", default=defaults.optimizer, help="sgd or adam (default %(default)s)")
    g.add_argument("--scheduler", default=defaults.scheduler, help="onecycle, step, cosine or none (default %(default)s)")
    g.add_argument("--lr", type=lr_or_find, default=defaults.lr,
                   help="peak lr for onecycle, else initial; 'find': the LR range test picks the peak and draws "
                        "lr_finder.png (default %(default)s)")
    g.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="default %(default)s")
    g.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing, help="default %(default)s")
    g.add_argument("--no-augment", dest="augment", action="store_false", default=defaults.augment,
                   help="train without augmentation")
    g.add_argument("--augmentation", default=defaults.augmentation,
                   help="default (flip, shift-scale-rotate, pad-crop, 16x16 cutout) or page (flip, pad-crop, 8x8 "
                        "cutout) (default %(default)s)")
    g.add_argument("--augment-on", default=defaults.augment_on,
                   help="where the training images are augmented: device (batched tensor ops on the GPU, the data set "
                        "kept there; the test images normalised there too), cpu (albumentations in --workers "
                        "processes) or auto (device on CUDA, cpu elsewhere) (default %(default)s)")
    g.add_argument("--seed", type=int, default=defaults.seed, help="default %(default)s")


def _run(p: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    g = p.add_argument_group("run")
    g.add_argument("--out", default=defaults.out, help="output folder (default %(default)s)")
    g.add_argument("--resume", nargs="?", const="", default=None, metavar="CHECKPOINT",
                   help="continue from CHECKPOINT (default <out>/checkpoint.pt)")
    g.add_argument("--overwrite", action="store_true", help="replace a run already in --out")
    g.add_argument("--device", default=defaults.device, help="auto, cpu or cuda (default %(default)s)")
    g.add_argument("--no-amp", dest="amp", action="store_false", default=defaults.amp, help="no mixed precision on CUDA")
    g.add_argument("--no-channels-last", dest="channels_last", action="store_false", default=defaults.channels_last,
                   help="keep NCHW memory format on CUDA")
    g.add_argument("--workers", dest="num_workers", type=int, default=defaults.num_workers,
                   help="data-loader processes (default: 2 on a 2-core machine)")
    g.add_argument("--max-batches", type=positive_int, default=defaults.max_batches,
                   help="batches per pass, for smoke runs")
    g.add_argument("--quiet", dest="progress", action="store_false", help="no progress bars")


def _watching(p: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    g = p.add_argument_group("watching the run")
    g.add_argument("--track-cams", type=non_negative_int, default=defaults.track_cams, metavar="N",
                   help="follow the Grad-CAM of N test images (of different classes) through training: "
                        "cam_evolution.png and .gif in --out (default %(default)s)")
    g.add_argument("--track-layers", nargs="+", default=list(defaults.track_layers), metavar="LAYER",
                   help="the layers of the tracked maps (default: %(default)s)")
    g.add_argument("--tensorboard", metavar="DIR", default=defaults.tensorboard,
                   help='write TensorBoard logs (loss, accuracy, lr per step, tracked maps) into DIR; '
                        'needs pip install "eva-utils[tensorboard]"')


def _add_training_options(p: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    """Options shared by ``train`` and ``demo``; defaults come from a TrainConfig."""
    for group in (_model_and_data, _training, _run, _watching):
        group(p, defaults)


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``train`` on the ``eva-utils`` subcommands; returns its parser."""
    p = subparsers.add_parser("train", description=TRAIN_DESCRIPTION)
    _train_arguments(p, TrainConfig())
    p.set_defaults(func=_cmd_train)
    return p


def _train_arguments(p: argparse.ArgumentParser, defaults: TrainConfig) -> None:
    """``train``'s options, their defaults from ``defaults`` (a recipe)."""
    p.add_argument("--recipe", default="default", help="the settings to start from: default (ResNet18, 20 epochs, one "
                   "cycle to 0.4) or page24 (Page's custom ResNet, 24 epochs, batch 512, peak at epoch 5, flip + "
                   "pad-crop + 8x8 cutout); the flags given override it (default %(default)s)")
    _add_training_options(p, defaults)
    g = p.add_argument_group("several GPUs (PyTorch DDP)")
    g.add_argument("--nproc", type=positive_int, default=1, metavar="N",
                   help="train on N processes of this machine (one per GPU; gloo on the CPU with --device cpu), "
                        "as torchrun --standalone --nproc-per-node N does; --batch-size stays the global batch")
    g.add_argument("--sync-bn", action="store_true", help="with several processes: BatchNorm over the global batch")


def add_demo_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``demo`` on the ``eva-utils`` subcommands; returns its parser."""
    p = subparsers.add_parser("demo", description="Train a narrow ResNet18 on the bundled CIFAR-10 "
                              "sample on the CPU and write curves, misclassified images, a confusion matrix and "
                              "per-layer Grad-CAM into --out; then the same figures of the model that ships with the "
                              "package (trained on all of CIFAR-10) into --out/pretrained.")
    _add_training_options(p, TrainConfig.demo())
    p.add_argument("--figures", metavar="DIR",
                   help="also copy the shipped model's figures (and the augmented samples) into DIR (images/ for the README)")
    p.set_defaults(func=_cmd_demo)
    return p


def _config_from_args(args: argparse.Namespace, base: TrainConfig) -> TrainConfig:
    settings = base.to_dict()
    given = dict(vars(args))
    if given.get("lr") == "find":  # the range test picks the peak; base's lr stays until it has
        del given["lr"]
        given["lr_find"] = True
    settings.update({k: v for k, v in given.items() if k in settings})
    return TrainConfig.from_dict(settings)


def _with_recipe(args: argparse.Namespace) -> tuple[argparse.Namespace, TrainConfig]:
    """``args`` parsed again over the defaults of ``--recipe`` (the flags given still win), and that recipe."""
    if args.recipe not in RECIPES:
        raise unknown_name("recipe", args.recipe, RECIPES)
    base = RECIPES[args.recipe]()
    if args.recipe == "default":
        return args, base
    p = Parser(prog="eva-utils train", description=TRAIN_DESCRIPTION)
    _train_arguments(p, base)
    again = p.parse_args(args.argv[args.argv.index("train") + 1:])
    again.func, again.argv = args.func, args.argv
    return again, base


def _resume_path(args: argparse.Namespace) -> Path | None:
    if args.resume is None:
        return None
    return Path(args.resume) if args.resume else Path(args.out) / "checkpoint.pt"


def _without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` less ``--nproc N`` (the processes it starts run the rest)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if not skip and arg != "--nproc" and not arg.startswith("--nproc="):
            kept.append(arg)
        skip = arg == "--nproc"  # its value comes next
    return kept


def _cmd_train(args: argparse.Namespace) -> int:
    args, base = _with_recipe(args)
    config = _config_from_args(args, base)
    if args.nproc > 1 and not distributed.under_torchrun():  # start torchrun's processes, each running this command
        config.validate()
        distributed.per_process_batch(config.batch_size, args.nproc)
        check_output_folder(Path(config.out), _resume_path(args), args.overwrite)
        return distributed.launch(args.nproc, _without_nproc(args.argv))
    try:
        result = run_training(config, resume=_resume_path(args), overwrite=args.overwrite)
        group = distributed.current()
        distributed.barrier(group)  # all leave together: gloo can abort a process that leaves while another works
    finally:
        distributed.leave()
    if group is not None and not group.is_main:
        return 0
    h = result.history
    if len(h):
        print(f"done: {len(h)} epochs, test accuracy {100 * h.test_acc[-1]:.2f}% (best {100 * max(h.test_acc):.2f}%)")
    print("wrote " + ", ".join(str(path) for path in result.files.values()))
    if result.files.get("tensorboard"):
        print(f"see the curves with: tensorboard --logdir {result.files['tensorboard']}")
    return 0


def _copy_figures(shipped: dict[str, Path], result: TrainResult, figures: Path) -> None:
    for path in sorted(shipped.values()):
        if path.suffix == ".png":
            atomic_copy(path, figures / path.name)
    atomic_copy(result.out / "samples.png", figures / "samples.png")
    print(f"copied the shipped model's figures (and the augmented samples) into {figures}")


def _cmd_demo(args: argparse.Namespace) -> int:
    from eva_utils.apps.report import write_pretrained_report, write_report

    start = time.perf_counter()
    config = _config_from_args(args, TrainConfig.demo())
    figures = None  # claimed before training, not after it
    if args.figures:
        figures = claim_output_folder(args.figures, overwrite=args.overwrite, owned=FIGURES, kind="figures",
                                      param="figures")
    result = run_training(config, resume=_resume_path(args), overwrite=args.overwrite)
    files = write_report(result.model, result.test_loader.dataset, result.out, train_set=result.train_set,
                         caption=f"the demo's small model: {len(result.history)} epochs on the bundled sample, on the CPU")
    shipped = write_pretrained_report(result.out / "pretrained")
    if figures is not None:
        _copy_figures(shipped, result, figures)
    h = result.history
    print(f"demo done in {time.perf_counter() - start:.0f}s: {len(h)} epochs on the bundled sample, "
          f"test accuracy {100 * h.test_acc[-1]:.1f}% (a short CPU run, not a full training)")
    for path in [*result.files.values(), *files.values()]:
        print(f"  {path}")
    print(f"the shipped model's figures (trained on all 50,000 CIFAR-10 images), in {result.out / 'pretrained'}:")
    for path in shipped.values():
        print(f"  {path}")
    return 0


if __name__ == "__main__":  # a module, not a command: say which one
    from eva_utils.apps.cli import not_a_command

    raise SystemExit(not_a_command(__spec__.name, "train"))
