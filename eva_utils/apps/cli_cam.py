"""``eva-utils cam``: Grad-CAM for any CNN from the command line.

    eva-utils cam --model_path vgg16 --conv2d_backcount 1 --images_path data --labels_path labels.txt --n_images 3 --show
    eva-utils cam --model_path vgg16 --conv2d_backcount 1 3 4 --images_path data/cat/1.jpg --save_dir out
    eva-utils cam --model-path runs/resnet18/checkpoint.pt --images-path photos --layer layer4 --layer layer3
    eva-utils cam --model-path weights.pth --arch resnet50 --images-path photos --method layercam
    python -m eva_utils.cam_cli --model-path resnet18 --weights none --images-path photos

The original GradCam tool's flags (``--model_path``, ``--conv2d_backcount``, ``--images_path``, ...) work, also with
dashes. Per image and layer one figure: the image, then the CAMs of the three most likely classes and of the least
likely one. File names: ``image{idx}.png`` for one layer (idx = the image's position among those found),
``{layer}.png`` for several layers on one image, ``image{idx}_{layer}.png`` for several layers on several images.
"""

from __future__ import annotations

import argparse
import random
import sys
import textwrap
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from eva_utils.apps.argtypes import Parser, count_from_back, finite_float, positive_float, positive_int, run_parsed
from eva_utils.core.devices import resolve_device
from eva_utils.core.errors import UserError, first_line
from eva_utils.core.files import check_replaceable, claim_output_folder, record_written
from eva_utils.data import images as inputs
from eva_utils.data.labels import imagenet_classes, read_labels
from eva_utils.data.presets import get_preset
from eva_utils.explain import cam
from eva_utils.explain.cam import CAM_METHODS
from eva_utils.models import loading as sources
from eva_utils.plots import save_figure, show_cams

__all__ = ["add_parser", "main", "run"]

DEFAULT_SAVE_DIR = "gradcam_out"
CAM_LEDGER = ".eva_utils_cam.json"  # the figures cam wrote into a --save_dir, by sha256: what --overwrite may replace
_NON_INTERACTIVE = {"agg", "pdf", "ps", "svg", "pgf", "cairo", "template"}


def _output_key(text: str) -> int | str:
    """An output position (``-1``) or, for a model returning a dict, a key (``logits``)."""
    try:
        return int(text)
    except ValueError:
        return text


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``cam`` on the ``eva-utils`` subcommands; returns its parser."""
    p = subparsers.add_parser("cam", description="Grad-CAM for any CNN: for each image, the CAMs of the three most "
                              "likely classes and of the least likely one, at the layers you choose. Accepts the flags of "
                              "the original GradCam tool (--model_path, --conv2d_backcount, ...), also with dashes.")
    g = p.add_argument_group("model")
    g.add_argument("--model_path", "--model-path", "--model", dest="model_path", required=True, metavar="MODEL",
                   help="a torchvision model name (vgg16, resnet50, ...; eva_utils.resnet18 for eva_utils's), "
                        "pretrained:NAME for a model shipped with eva_utils (pretrained:resnet18_w16_cifar10), a checkpoint "
                        "from 'eva-utils train', a state dict (with --arch), a TorchScript file (with --arch), "
                        "or a pickled model (with --unsafe-pickle)")
    g.add_argument("--arch", metavar="NAME",
                   help="architecture of a state dict or TorchScript file: a torchvision or eva_utils name")
    g.add_argument("--num-classes", "--num_classes", dest="num_classes", type=positive_int, metavar="N",
                   help="outputs of --arch (default: read off the weights)")
    g.add_argument("--weights", default="default", metavar="W",
                   help="for a model name: 'default' = the pretrained ImageNet weights (downloaded once; the default), "
                        "'none' = random weights, or a torchvision weights name such as IMAGENET1K_V1")
    g.add_argument("--unsafe-pickle", "--unsafe_pickle", dest="unsafe_pickle", action="store_true",
                   help="allow a model saved whole with torch.save(model): loading it can run any code stored in the file")
    g.add_argument("--output-index", "--output_index", dest="output_index", type=_output_key, metavar="K",
                   help="for models returning several outputs (multi-exit): which one to explain (-1 = last; "
                        "a name for a model that returns a dict, e.g. logits)")
    g = p.add_argument_group("layers (default: the last conv layer)")
    g.add_argument("--conv2d_backcount", "--conv2d-backcount", dest="conv2d_backcount", type=count_from_back, nargs="+",
                   metavar="K",
                   help="conv layers counted from the back in forward order: 1 = the last nn.Conv2d; several allowed")
    g.add_argument("--layer", dest="layer", action="extend", nargs="+", metavar="NAME",
                   help="a module by its dotted name, e.g. layer4 or layer4.1 or features.28; may be repeated")
    g = p.add_argument_group("images and classes")
    g.add_argument("--images_path", "--images-path", dest="images_path", nargs="+", required=True, metavar="PATH",
                   help="a root folder above class folders, a folder of images, or image files")
    g.add_argument("--n_images", "--n-images", dest="n_images", type=positive_int, metavar="N",
                   help="explain N images picked at random (reproducible with --seed); default all")
    g.add_argument("--seed", type=int, default=0, help="which images --n_images picks (default %(default)s)")
    g.add_argument("--labels_path", "--labels-path", dest="labels_path", metavar="FILE",
                   help="class names: a dict {0: 'cat', 1: 'dog'}, a JSON object or list, or one name per line")
    g.add_argument("--imageNet_labels", "--imagenet-labels", "--imagenet_labels", dest="imagenet_labels", action="store_true",
                   help="use the 1,000 ImageNet class names shipped with torchvision")
    g = p.add_argument_group("preprocessing (default: the model's: ImageNet for torchvision, CIFAR-10 for eva_utils)")
    g.add_argument("--preset", choices=("imagenet", "cifar"),
                   help="imagenet: resize 256, crop 224, ImageNet mean/std; cifar: 32x32, CIFAR-10 mean/std")
    g.add_argument("--input-size", "--input_size", dest="input_size", type=positive_int, metavar="S",
                   help="side of the model input (the crop); the resize scales with it")
    g.add_argument("--mean", type=finite_float, nargs=3, metavar=("R", "G", "B"), help="normalisation mean")
    g.add_argument("--std", type=positive_float, nargs=3, metavar=("R", "G", "B"), help="normalisation std")
    g = p.add_argument_group("CAM and output")
    g.add_argument("--method", default="gradcam", help=f"one of {', '.join(CAM_METHODS)} (default %(default)s)")
    g.add_argument("--device", default="auto", help="auto (the GPU when there is one), cpu or cuda (default %(default)s)")
    g.add_argument("--batch-size", "--batch_size", dest="batch_size", type=positive_int, default=4, metavar="N",
                   help="images per pass; each is explained for 4 classes at once (default %(default)s)")
    g.add_argument("--save_dir", "--save-dir", dest="save_dir", metavar="DIR",
                   help=f"where to write the figures (created if missing); default ./{DEFAULT_SAVE_DIR} unless --show")
    g.add_argument("--overwrite", action="store_true", help="replace the figures cam wrote into --save_dir before")
    g.add_argument("--show", action="store_true", help="show the figures in windows (matplotlib)")
    p.set_defaults(func=run)
    return p


# ----------------------------------------------------------------------------- the pieces of a run


def _class_names(args: argparse.Namespace, default: Sequence[str] | None, num_outputs: int) -> tuple[str, ...]:
    """Class names for the model's ``num_outputs`` outputs: from the labels file, ImageNet, the model, or numbers."""
    if args.labels_path and args.imagenet_labels:
        raise UserError("give either --labels_path or --imageNet_labels, not both")
    if args.labels_path:
        names, origin = read_labels(args.labels_path), f"labels file {args.labels_path}"
    elif args.imagenet_labels:
        names, origin = imagenet_classes(), "--imageNet_labels"
    elif default is not None and len(default) == num_outputs:
        return tuple(default)
    else:
        return tuple(f"class {i}" for i in range(num_outputs))
    if len(names) != num_outputs:
        raise UserError(f"{origin} holds {len(names)} class names but the model has {num_outputs} outputs; "
                        "give one name per output")
    return tuple(names)


class _Layer(NamedTuple):
    label: str  # for titles: ``layer4.1.conv2 (conv 1 of 20 from the back)``
    module: torch.nn.Module
    stem: str  # for file names: ``back1_layer4.1.conv2`` (not ``layer1``, which a ResNet's own layer1 would clash with)


def _layers(model: torch.nn.Module, args: argparse.Namespace, input_size: int) -> dict[str, _Layer]:
    """Layer name -> what to call it and the module, for the layers asked for; the last conv layer by default."""
    chosen: dict[str, _Layer] = {}
    counts = args.conv2d_backcount or ([] if args.layer else [1])
    if counts:
        convs = cam.conv_layers(model, input_size)
        names = list(convs)
        for name, module in cam.count_from_back(convs, counts).items():
            k = len(names) - names.index(name)
            chosen[name] = _Layer(f"{name} (conv {k} of {len(names)} from the back)", module, f"back{k}_{name}")
    if args.layer:
        for name, module in cam.resolve_layers(model, args.layer).items():
            chosen.setdefault(name, _Layer(name, module, name))
    return chosen


def _order(count: int, n_images: int | None, seed: int) -> list[int]:
    """Indices of the images in the order to try them: all in order, or shuffled by ``seed`` to pick n."""
    indices = list(range(count))
    if n_images is not None:
        random.Random(seed).shuffle(indices)
    return indices


def _short(name: str, width: int = 18) -> str:
    """A class name fit for a panel title: its first synonym, at most two lines."""
    first = name.split(",")[0].strip() or name
    return textwrap.fill(textwrap.shorten(first, 2 * width, placeholder="..."), width)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _prob(p: float) -> str:
    return f"{p:.2f}" if p >= 0.01 else f"{p:.1e}"


def _targets(probs: np.ndarray) -> np.ndarray:
    """Per image: the three most likely classes, then the least likely one -> int (N, T)."""
    ranked = np.argsort(-probs, axis=1, kind="stable")  # (N, K), most likely first
    top = ranked[:, : min(3, probs.shape[1])]
    return np.concatenate([top, ranked[:, -1:]], axis=1) if probs.shape[1] > 3 else top


def _file_name(idx: int, stem: str, many_images: bool, many_layers: bool) -> str:
    """``image3.png``; with several layers ``image3_back1_layer4.1.conv2.png``, or ``back1_layer4.1.conv2.png`` for one image."""
    if not many_layers:
        return f"image{idx}.png"
    return f"image{idx}_{stem}.png" if many_images else f"{stem}.png"


def _check_runs(model: torch.nn.Module, size: int, output_index: int | None) -> int:
    """Run the model once on a dummy image; return its number of outputs (classes)."""
    try:
        return cam.class_probs(model, torch.zeros(1, 3, size, size), output_index=output_index).shape[1]
    except UserError:
        raise
    except (RuntimeError, ValueError) as exc:
        raise UserError(f"the model cannot run on {size}x{size} RGB images ({first_line(exc)}); "
                        "set --input-size or --preset") from exc


def _explain_batch(batch: list[tuple[int, Any, torch.Tensor]], model: torch.nn.Module, layers: dict[str, _Layer],
                   classes: Sequence[str], preset: Any, args: argparse.Namespace,
                   many_images: bool) -> list[tuple[str, Any, str]]:
    """Figures for one batch: [(file name, Figure, one-line note)], one per image and layer."""
    x = torch.stack([t for _, _, t in batch])  # (B, 3, S, S)
    probs = cam.class_probs(model, x, output_index=args.output_index)  # (B, K)
    targets = _targets(probs)  # (B, T)
    per = targets.shape[1]
    modules = {key: layer.module for key, layer in layers.items()}
    try:
        maps = cam.layer_cams(model, x.repeat_interleave(per, 0), modules, targets=targets.reshape(-1), method=args.method,
                              batch_size=len(x) * per, output_index=args.output_index)  # key -> (B*T, S, S)
    except torch.OutOfMemoryError as exc:
        raise UserError("out of memory while computing the CAMs: lower --batch-size (or --input-size)") from exc
    sizes = cam.map_sizes(model, modules, tuple(x.shape[-2:]))  # how coarse each layer's map really is
    rgb = preset.to_rgb(x)  # (B, S, S, 3)
    ranks = ["top 1", "top 2", "top 3"][: min(3, per)] + (["lowest"] if per > 3 else [])
    out = []
    for b, (idx, image_file, _) in enumerate(batch):
        titles = [f"{rank}: {_short(classes[c])}\np = {_prob(probs[b, c])}" for rank, c in zip(ranks, targets[b], strict=False)]
        for key, layer in layers.items():
            panels = [maps[key][b * per + t][None] for t in range(per)]  # each (1, S, S)
            fig = show_cams(rgb[b:b + 1], panels, titles=[titles], row_labels=[textwrap.shorten(image_file.name, 40)],
                                title=f"{args.method} at {layer.label} ({_size(sizes[key])} map); red = high")
            top = targets[b, 0]
            note = f"{image_file.name}: {textwrap.shorten(classes[top], 60)} (p = {_prob(probs[b, top])})"
            out.append((_file_name(idx, layer.stem, many_images, len(layers) > 1), fig, note))
    return out


def _size(size: tuple[int, int]) -> str:
    """``8x8``, or ``4x4, coarse`` under 5 pixels (a CAM that can only name a quarter of the image)."""
    return f"{size[0]}x{size[1]}{', coarse' if min(size) < 5 else ''}"


def _show(figures: list[Any]) -> None:
    """Hand Figures built without pyplot to pyplot, then ``plt.show()``."""
    import matplotlib.pyplot as plt

    for fig in figures:
        try:
            plt.figure(fig)  # matplotlib >= 3.10 adopts an unmanaged Figure
        except ValueError:  # older matplotlib: the same steps by hand
            from matplotlib import _pylab_helpers

            num = max(plt.get_fignums(), default=0) + 1
            manager = plt._get_backend_mod().new_figure_manager_given_figure(num, fig)
            _pylab_helpers.Gcf._set_new_active_manager(manager)
    plt.show()


def _save_dir(args: argparse.Namespace) -> tuple[Path | None, bool]:
    """Where to save (None: nowhere) and whether to show, saying what happens when it is not what was asked."""
    show = bool(args.show)
    save_dir = Path(args.save_dir) if args.save_dir else None
    if show:
        import matplotlib

        backend = str(matplotlib.get_backend())
        if backend.lower() in _NON_INTERACTIVE:
            show = False
            fallback = "" if save_dir else f"; saving into ./{DEFAULT_SAVE_DIR} instead"
            print(f"note: --show: matplotlib's backend {backend!r} cannot open windows (no display?){fallback}")
    if save_dir is None and not show:
        save_dir = Path(DEFAULT_SAVE_DIR)
        if not args.show:
            print(f"no --save_dir and no --show: saving the figures into ./{DEFAULT_SAVE_DIR}")
    if save_dir is not None:
        save_dir = claim_output_folder(save_dir, overwrite=args.overwrite, owned=("*.png",), kind="figures",
                                       param="save_dir")
    return save_dir, show


# ----------------------------------------------------------------------------- the command


def run(args: argparse.Namespace) -> int:
    """Explain the images with the model as ``args`` says; print one line per image and a summary."""
    start = time.perf_counter()
    cam.method_key(args.method)  # an unknown method fails now, not after loading the model
    classifier = sources.load_model(args.model_path, arch=args.arch, num_classes=args.num_classes, weights=args.weights,
                                    unsafe_pickle=args.unsafe_pickle, device=resolve_device(args.device))
    model = classifier.model
    preset = get_preset(args.preset or classifier.preset, args.input_size, args.mean, args.std)
    device = next(iter(model.parameters()), torch.empty(0)).device
    print(f"model: {classifier.description}; on {device.type}")
    classes = _class_names(args, classifier.classes, _check_runs(model, preset.size, args.output_index))
    layers = _layers(model, args, preset.size)
    files = inputs.find_images(args.images_path)
    save_dir, show = _save_dir(args)
    many_images = len(files) > 1 and args.n_images != 1
    print(f"explaining {min(len(files), args.n_images or len(files))} of {len(files)} images at "
          f"{', '.join(layer.label for layer in layers.values())} with {args.method}, "
          f"{preset.size}x{preset.size} {preset.name} preprocessing")

    done = skipped = 0
    written: list[Path] = []
    figures: list[Any] = []
    batch: list[tuple[int, Any, torch.Tensor]] = []

    def flush() -> None:
        nonlocal done
        for name, fig, note in _explain_batch(batch, model, layers, classes, preset, args, many_images):
            if save_dir is not None:  # overwrite replaces cam's own unchanged figures only, never a file of the user's
                check_replaceable(save_dir, [name], CAM_LEDGER, "eva-utils cam", param="save_dir")
                written.append(save_figure(fig, save_dir / name))
                record_written(save_dir, written[-1:], CAM_LEDGER, keep=True)
            if show:
                figures.append(fig)
            print(f"  {name}  {note}")
        done += len(batch)
        batch.clear()

    for idx in _order(len(files), args.n_images, args.seed):
        if args.n_images is not None and done + len(batch) >= args.n_images:
            break
        try:
            image = inputs.read_image(files[idx].path)
        except inputs.UnreadableImageError as exc:
            print(f"eva-utils cam: warning: skipped {exc}", file=sys.stderr)
            skipped += 1
            continue
        batch.append((idx, files[idx], preset(image)))
        if len(batch) == args.batch_size:
            flush()
    if batch:
        flush()
    if done == 0:
        raise UserError(f"none of the {len(files)} image files could be read; see the warnings above")
    if args.n_images is not None and done < args.n_images:
        print(f"note: only {done} readable images (asked for {args.n_images})")
    where = f" to {save_dir}" if save_dir is not None else ""
    print(f"done in {time.perf_counter() - start:.1f}s: {_count(done, 'image')}, {skipped} skipped (unreadable), "
          f"{_count(len(written), 'file')} written{where}" + (f", {_count(len(figures), 'figure')} shown" if show else ""))
    if show:
        _show(figures)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m eva_utils.cam_cli ...``: the same as ``eva-utils cam ...``."""
    parser = Parser(prog="eva-utils")
    add_parser(parser.add_subparsers(dest="command", required=True))
    return run_parsed(parser, ["cam", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
