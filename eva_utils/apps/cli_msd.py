"""``eva-utils msd``: evaluate every exit of an MSD-Net checkpoint and draw each exit's Grad-CAM.

    eva-utils msd --checkpoint anytime_cifar_10.pth.tar --download-checkpoint   # fetch the published model first
    eva-utils msd --checkpoint anytime_cifar_10.pth.tar                  # per-exit accuracy + which exits get each image right
    eva-utils msd --checkpoint anytime_cifar_10.pth.tar --cl dog         # the same for the dogs only
    eva-utils msd --checkpoint anytime_cifar_10.pth.tar --img-no 101 --exit 5   # heatmap of test image 101 by exit 5
    eva-utils msd --checkpoint ... --per-class --budget --grid 6         # classes x exits, anytime curve, image x exit grid

The checkpoint is in the MSDNet-GCN format (its weights expect ``ToTensor()`` images, not normalised) or one of
``eva-utils train --model msdnet`` (normalised); each gets the inputs it was trained on. ``--data sample`` (the default)
is the 1,000 bundled CIFAR-10 test images, ``--data cifar10`` the full 10,000. Image numbers are positions in that test
set; exits are numbered from 1.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from eva_utils.apps.argtypes import non_negative_int, positive_int
from eva_utils.core.devices import resolve_device
from eva_utils.core.errors import UserError
from eva_utils.core.files import claim_output_folder
from eva_utils.data.arrays import load_dataset
from eva_utils.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD, denormalize
from eva_utils.data.loaders import make_loader
from eva_utils.data.presets import test_transforms
from eva_utils.explain import multiexit as mx
from eva_utils.models.loading import load_model
from eva_utils.models.msdnet_gcn import MSDNET_GCN_CIFAR10_PAGE, download_msdnet_gcn_checkpoint, verify_msdnet_gcn_download
from eva_utils.models.msdnet_model import MSDNet
from eva_utils.plots import overlay, plot_budget_curve, save_figure, show_exit_cams

__all__ = ["add_parser", "run"]

MAX_GRID = 24  # images in grid.png: beyond this the figure is wider than any screen


def _exit_list(text: str) -> list[int]:
    try:
        exits = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected exit numbers such as 5 or 10,5,3,1; got {text!r}") from None
    if not exits:
        raise argparse.ArgumentTypeError("expected at least one exit number")
    return exits


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``msd`` on the ``eva-utils`` sub-command parsers."""
    p = subparsers.add_parser("msd", description="Per-exit accuracy, which exits get each test image right (its "
                              "difficulty), per-class accuracy per exit, the anytime accuracy/compute curve, and Grad-CAM "
                              "of image N by exit K, for an MSD-Net checkpoint (MSDNet-GCN format, or from eva-utils "
                              "train --model msdnet).")
    g = p.add_argument_group("model and data")
    g.add_argument("--checkpoint", metavar="PATH",
                   help=f"MSDNet-GCN checkpoint, e.g. anytime_cifar_10.pth.tar from {MSDNET_GCN_CIFAR10_PAGE}, "
                        "or a checkpoint.pt of `eva-utils train --model msdnet`")
    g.add_argument("--download-checkpoint", action="store_true",
                   help="when --checkpoint names no file yet, download the published CIFAR-10 model there first")
    g.add_argument("--data", default="sample",
                   help="sample (the 1,000 bundled test images, offline) or cifar10 (10,000; downloads) (default %(default)s)")
    g.add_argument("--data-dir", default="./data", help="where CIFAR-10 is or goes (default %(default)s)")
    g.add_argument("--no-download", dest="download", action="store_false", help="fail instead of downloading CIFAR-10")
    g.add_argument("--batch-size", type=positive_int, default=256, help="default %(default)s")
    g.add_argument("--device", default="auto", help="auto, cpu or cuda (default %(default)s)")
    g = p.add_argument_group("tables")
    g.add_argument("--cl", metavar="CLASS", help="only the test images of this class, e.g. dog")
    g.add_argument("--limit", type=non_negative_int, default=20,
                   help="rows of the per-image table (0: all; default %(default)s)")
    g.add_argument("--per-class", action="store_true", help="also print accuracy per class and exit")
    g.add_argument("--budget", action="store_true",
                   help="also print the anytime curve (stop at the first confident exit) and write budget_curve.png")
    g = p.add_argument_group("Grad-CAM")
    g.add_argument("--img-no", type=non_negative_int, metavar="N",
                   help="write the heatmap of test image N (its index in the test set) instead of the tables")
    g.add_argument("--exit", type=_exit_list, metavar="K[,K...]",
                   help="exit(s) for --img-no and --grid, 1-based (default 10,5,3,1 clipped to the model's exits)")
    g.add_argument("--grid", type=positive_int, metavar="N",
                   help="also write grid.png: N images (hardest to easiest) x the exits (at most 24)")
    g.add_argument("--out", default="msd_out", help="folder for the images (default %(default)s; created)")
    g.add_argument("--overwrite", action="store_true", help="replace images already in --out")
    p.set_defaults(func=run)
    return p


# ----------------------------------------------------------------------------- helpers


def _marks() -> tuple[str, str]:
    """Tick and cross if the terminal can print them, else 1 and 0."""
    try:
        "✓✗".encode(sys.stdout.encoding or "ascii")
    except (UnicodeEncodeError, LookupError):
        return ("1", "0")
    return ("✓", "✗")


def _fetch_if_asked(args: argparse.Namespace) -> None:
    """Download the published model to ``--checkpoint`` with ``--download-checkpoint``; else say how."""
    if Path(args.checkpoint).exists():
        verify_msdnet_gcn_download(args.checkpoint)  # against the hash recorded when it was downloaded, if any
        return
    if not args.download_checkpoint:
        raise UserError(f"checkpoint {args.checkpoint!r} does not exist: check the path, or add --download-checkpoint "
                        f"to fetch the published CIFAR-10 model there ({MSDNET_GCN_CIFAR10_PAGE})")
    print(f"downloading the published MSD-Net to {args.checkpoint}", file=sys.stderr)
    download_msdnet_gcn_checkpoint(args.checkpoint)


def _load(args: argparse.Namespace) -> tuple[MSDNet, Any, bool]:
    """The model, the test set in the form its weights expect, and whether that form is normalised."""
    if not args.checkpoint:
        raise UserError("pass --checkpoint PATH, an MSDNet-GCN checkpoint such as anytime_cifar_10.pth.tar "
                        f"(the published CIFAR-10 model: {MSDNET_GCN_CIFAR10_PAGE})")
    device = resolve_device(args.device)  # before any download
    _fetch_if_asked(args)
    classifier = load_model(args.checkpoint, device=device)  # the one loader: it tells the two kinds apart
    model, normalized = classifier.model, any(classifier.preset.mean)  # MSDNet-GCN's weights: ToTensor() images, mean 0
    if not isinstance(model, MSDNet):
        raise UserError(f"{args.checkpoint} holds a {type(model).__name__}, not an MSD-Net: eva-utils msd needs a "
                        "multi-exit model")
    transform = test_transforms() if normalized else None
    test_set = load_dataset(args.data, train=False, transform=transform, root=args.data_dir, download=args.download)
    if len(test_set.classes) != model.config.num_classes:
        raise UserError(f"the checkpoint has {model.config.num_classes} classes but the {args.data} data has "
                        f"{len(test_set.classes)}")
    return model, test_set, normalized


def _exits(args: argparse.Namespace, num_exits: int) -> tuple[int, ...]:
    if args.exit is None:
        return mx.default_exits(num_exits)
    bad = [k for k in args.exit if not 1 <= k <= num_exits]
    if bad:
        raise UserError(f"--exit {bad[0]} does not exist: this model has {num_exits} exits, numbered 1..{num_exits}")
    return tuple(dict.fromkeys(args.exit))


def _loader(dataset: Any, rows: Any, args: argparse.Namespace) -> Any:
    from torch.utils.data import Subset

    subset = Subset(dataset, [int(i) for i in rows])
    return make_loader(subset, args.batch_size, num_workers=0 if args.data == "sample" else None)


def _save_rgb(rgb: np.ndarray, path: Path, scale: int = 1) -> Path:
    """Write float RGB in [0, 1] (H, W, 3) as a lossless PNG, each pixel repeated ``scale`` times."""
    from PIL import Image

    # uint8 (H, W, 3), which Pillow reads as RGB: no ``mode=`` (deprecated in fromarray since Pillow 11.3)
    pixels = np.clip(np.round(rgb * 255.0), 0, 255).astype(np.uint8).reshape(*np.shape(rgb)[:2], 3)
    pixels = pixels.repeat(scale, axis=0).repeat(scale, axis=1)
    Image.fromarray(pixels).save(path)
    return path


# ----------------------------------------------------------------------------- actions


def _heatmaps(args: argparse.Namespace, model: MSDNet, test_set: Any, normalized: bool) -> int:
    """Input and Grad-CAM overlays of test image ``--img-no`` for each chosen exit."""
    n = args.img_no
    if n >= len(test_set):
        raise UserError(f"--img-no {n} is past the end of the {args.data} test set: it has {len(test_set)} images, "
                        f"0..{len(test_set) - 1}")
    exits = _exits(args, model.num_exits)
    out = _output_folder(args, [f"img{n}_input.png", *(f"img{n}_exit{k}_gradcam.png" for k in exits)])
    pred = mx.predict_exits(model, _loader(test_set, [n], args))
    image, label = test_set[n]  # (3, 32, 32), int
    cams = mx.exit_cams(model, image[None], exits=exits)
    rgb = denormalize(image) if normalized else image.permute(1, 2, 0).numpy()  # (32, 32, 3) in [0, 1]
    classes = test_set.classes
    right = int(pred.correct[:, 0].sum())
    print(f"image {n}: true class {classes[label]}, right at {right} of {model.num_exits} exits")
    print(f"  wrote {_save_rgb(rgb, out / f'img{n}_input.png')} (the input, 32x32)")
    for k in exits:
        guess, p = int(pred.preds[k - 1, 0]), float(pred.probs[k - 1, 0].max())
        verdict = "right" if guess == label else "wrong"
        path = _save_rgb(overlay(rgb, cams[k][0]), out / f"img{n}_exit{k}_gradcam.png", scale=8)
        print(f"  exit {k}: predicts {classes[guess]} (p={p:.2f}, {verdict}); wrote {path} (red = most important)")
    return 0


def _output_folder(args: argparse.Namespace, names: list[str]) -> Path:
    """``--out``, created, after checking that none of ``names`` would replace a file there (unless --overwrite)."""
    return claim_output_folder(args.out, overwrite=args.overwrite, owned=names, kind="images")


def _tables(args: argparse.Namespace, model: MSDNet, test_set: Any, normalized: bool) -> int:
    """The accuracy tables, and with --budget / --grid their figures."""
    import torch

    classes = test_set.classes
    rows = np.arange(len(test_set))
    scope = f"{args.data} test set, {len(rows)} images"
    if args.cl is not None:
        c = mx.class_index(args.cl, classes)
        rows = np.flatnonzero(test_set.labels == c)
        scope = f"class {classes[c]}: {len(rows)} images of the {args.data} test set"
    exits = _exits(args, model.num_exits)
    figures = (["budget_curve.png"] if args.budget else []) + (["grid.png"] if args.grid else [])
    out = _output_folder(args, figures) if figures else Path(args.out)
    pred = mx.predict_exits(model, _loader(test_set, rows, args))
    costs = mx.exit_costs(model)
    print(f"accuracy of each exit ({scope})")
    print(mx.format_exit_accuracy(mx.exit_accuracy(pred), costs.single))
    print("\nwhich exits get each image right (image = index in the test set; right = exits right, the difficulty)")
    print(mx.format_correctness(pred, classes, limit=args.limit, marks=_marks()))
    print()
    print(mx.format_difficulty_counts(pred))
    if args.per_class:
        print("\naccuracy per class and exit (* = the class's best exit)")
        print(mx.format_class_exit_accuracy(mx.per_class_exit_accuracy(pred, len(classes)), classes))
    if args.budget:
        curve = mx.budget_curve(pred, costs)
        print()
        print(mx.format_budget_curve(curve))
        print(f"wrote {save_figure(plot_budget_curve(curve), out / 'budget_curve.png')}")
    if args.grid:
        sub = pred.subset(mx.examples_by_difficulty(pred, args.grid))
        images = torch.stack([test_set[int(i)][0] for i in sub.indices])  # (N, 3, 32, 32)
        cams = mx.exit_cams(model, images, exits=exits)
        stats = dict(mean=CIFAR10_MEAN, std=CIFAR10_STD) if normalized else {}
        fig = show_exit_cams(images, cams, sub, classes, **stats)
        print(f"wrote {save_figure(fig, out / 'grid.png')}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run ``eva-utils msd``; user errors are raised as :class:`UserError` (exit status 2 in ``cli.main``)."""
    if args.grid is not None and args.grid > MAX_GRID:
        raise UserError(f"--grid {args.grid} is too many images for one figure (at most {MAX_GRID}); "
                        "run it per class with --cl to see more images")
    if args.img_no is not None and (args.cl is not None or args.grid or args.budget or args.per_class):
        raise UserError("--img-no N draws one image's heatmaps; leave out --cl, --grid, --budget and --per-class with it")
    if args.exit is not None and args.img_no is None and not args.grid:
        raise UserError("--exit K chooses the exits drawn by --img-no N or --grid N; add one of them")
    model, test_set, normalized = _load(args)
    if args.img_no is not None:
        return _heatmaps(args, model, test_set, normalized)
    return _tables(args, model, test_set, normalized)


if __name__ == "__main__":  # a module, not a command: say which one
    from eva_utils.apps.cli import not_a_command

    raise SystemExit(not_a_command(__spec__.name, "msd"))
