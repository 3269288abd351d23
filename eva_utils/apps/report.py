"""Write the "look inside" figures of a trained model in one call (used by ``eva-utils demo`` and notebook 01).

``write_report`` saves a model's figures and ``metrics.json``; ``write_pretrained_report`` those of the shipped
model (the README's); ``write_submission`` turns an ``eva-utils train`` run into a coursework submission.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from eva_utils.apps.argtypes import positive_int
from eva_utils.core.errors import DataNotFoundError, UserError
from eva_utils.core.files import atomic_copy, atomic_write_text, claim_output_file, claim_output_folder, staged_folder
from eva_utils.data.arrays import load_dataset
from eva_utils.data.cifar10 import CIFAR10_MEAN, CIFAR10_STD, load_sample
from eva_utils.data.loaders import make_loader
from eva_utils.data.presets import test_transforms
from eva_utils.evaluation.metrics import accuracy, confusion_matrix, misclassified, per_class_accuracy, predict
from eva_utils.explain.cam import is_resnet, layer_cams, map_sizes, resnet_layers
from eva_utils.models import summary
from eva_utils.models.shipped import pretrained, pretrained_info, training_history
from eva_utils.plots import (
    plot_confusion_matrix,
    plot_history,
    save_figure,
    show_layer_cams,
    show_misclassified,
    show_samples,
)
from eva_utils.training.checkpoint import check_history, load_checkpoint, rebuild_model
from eva_utils.training.history import History

__all__ = ["add_parser", "write_pretrained_report", "write_report", "write_submission"]


def write_report(model: nn.Module, test_set: Any, out: str | os.PathLike, train_set: Any | None = None,
                 n_misclassified: int = 20, n_cam: int = 10, method: str = "gradcam", caption: str | None = None,
                 extra_metrics: dict[str, Any] | None = None) -> dict[str, Path]:
    """Predict ``test_set`` and save the figures and metrics into ``out``.

    Args:
        model: a trained eva_utils ResNet (Grad-CAM uses its layer0..layer4).
        test_set: items ``(normalised CHW tensor, label)``, with ``classes``.
        out: folder for the files (created).
        train_set: an augmented training set for the sample grid (skipped when ``None``).
        n_misclassified: images in the gallery.
        n_cam: misclassified images in the Grad-CAM grid.
        method: CAM method name.
        caption: a line under every figure saying which model made it.
        extra_metrics: more entries for ``metrics.json`` (the submission's final accuracies, settings).

    Returns:
        Name -> path of every file written.
    """
    out = Path(out)
    save = functools.partial(_save_captioned, caption=caption)
    classes = list(getattr(test_set, "classes", []))
    device = next(model.parameters()).device
    pred = predict(model, make_loader(test_set, batch_size=256, shuffle=False, num_workers=0), device=device)
    files: dict[str, Path] = {}
    files["misclassified"] = save(show_misclassified(test_set, pred, n=n_misclassified, classes=classes),
                                  out / "misclassified.png")
    cm = confusion_matrix(pred.labels, pred.preds, len(classes))
    files["confusion_matrix"] = save(plot_confusion_matrix(cm, classes), out / "confusion_matrix.png")
    if train_set is not None:
        files["samples"] = save(show_samples(train_set, n=32, classes=classes), out / "samples.png")
    rows = misclassified(pred, k=n_cam)
    if len(rows):
        images = torch.stack([torch.as_tensor(test_set[int(i)][0]) for i in pred.indices[rows]])  # (n, C, H, W)
        stages = resnet_layers(model)
        cams = layer_cams(model, images, stages, targets=pred.preds[rows], method=method)
        sizes = map_sizes(model, stages, tuple(images.shape[-2:]))
        fig = show_layer_cams(images, cams, pred.labels[rows], pred.preds[rows], pred.preds[rows], classes, CIFAR10_MEAN,
                              CIFAR10_STD, sizes=sizes)
        files["gradcam_layers"] = save(fig, out / "gradcam_layers.png")
    per_class = per_class_accuracy(pred.labels, pred.preds, len(classes))
    metrics = {
        "images": len(pred.labels),
        "accuracy": accuracy(pred),
        "per_class_accuracy": {c: (None if np.isnan(a) else float(a)) for c, a in zip(classes, per_class, strict=True)},
        "misclassified": int((pred.preds != pred.labels).sum()),
        "confusion_matrix": cm.tolist(),  # rows true, columns predicted
        **(extra_metrics or {}),
    }
    files["metrics"] = out / "metrics.json"
    atomic_write_text(files["metrics"], json.dumps(metrics, indent=1))
    return files


def _save_captioned(fig: Any, path: Path, caption: str | None) -> Path:
    """``save_figure``, writing ``caption`` under the figure first when there is one."""
    if caption:
        fig.supxlabel(caption, fontsize=9, color="0.3")
    return save_figure(fig, path)


def write_pretrained_report(out: str | os.PathLike, name: str = "resnet18_w16_cifar10") -> dict[str, Path]:
    """The figures of a model that ships with the package, on the 1,000 bundled CIFAR-10 test images.

    Writes what :func:`write_report` writes (no augmented samples) plus ``curves.png`` of the run that trained the
    model, each figure captioned with the model and its accuracy (the README's figures: ``eva-utils demo --figures``).

    Returns:
        Name -> path of every file written.
    """
    info = pretrained_info(name)
    model = pretrained(name)
    test_set = load_sample(train=False, transform=test_transforms())
    caption = (f"shipped model {name} ({info.arch}, width {info.width}, trained on the CPU on all 50,000 CIFAR-10 "
               f"training images): {100 * info.test_accuracy:.1f}% on the 1,000 bundled test images")
    files = write_report(model, test_set, out, caption=caption)
    history = training_history(name)
    fig = plot_history(history, title=f"the run that trained {name}: {len(history['epoch'])} epochs on 50,000 CIFAR-10 images")
    files["curves"] = _save_captioned(fig, Path(out) / "curves.png", caption)
    return files


# ----------------------------------------------------------------------------- the coursework submission

SUBMISSION_FILES = ("README.md", "metrics.json", "history.json", "curves.png", "misclassified.png",
                    "confusion_matrix.png", "gradcam_layers.png", "samples.png")
"""What ``write_submission`` writes into its folder: all that ``overwrite=True`` may replace there."""

_SETTINGS = ("model", "width", "data", "epochs", "batch_size", "optimizer", "lr", "momentum", "nesterov",
             "weight_decay", "scheduler", "pct_start", "label_smoothing", "augment", "amp", "seed")


def _percent(x: float) -> str:
    return f"{100 * x:.2f}%"


def _observations(history: History, metrics: dict[str, Any], classes: list[str], cm: np.ndarray) -> list[str]:
    """Facts read off the numbers, for the student to build on (each one checkable in the files)."""
    best = int(np.argmax(history.test_acc))
    gap = history.train_acc[-1] - history.test_acc[-1]
    per_class = metrics["per_class_accuracy"]
    ranked = sorted((a, c) for c, a in per_class.items() if a is not None)
    off = cm - np.diag(np.diag(cm))
    true, guess = np.unravel_index(int(off.argmax()), off.shape)
    notes = [
        f"During training (history.json), test accuracy peaked at {_percent(history.test_acc[best])} in epoch "
        f"{history.epoch[best]} and ended at {_percent(history.test_acc[-1])} after {len(history)} epochs.",
        f"Train accuracy ended {abs(100 * gap):.1f} points {'above' if gap >= 0 else 'below'} test accuracy"
        + (" (train accuracy is measured on augmented images, which are harder)." if gap < 0 else "."),
    ]
    if ranked:
        notes.append(f"Hardest class: {ranked[0][1]} ({_percent(ranked[0][0])}); easiest: {ranked[-1][1]} "
                     f"({_percent(ranked[-1][0])}).")
    if off.max() > 0:
        notes.append(f"The most frequent confusion: {classes[true]} taken for {classes[guess]} "
                     f"({int(off[true, guess])} images).")
    return notes


def write_submission(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, overwrite: bool = False,
                     data_dir: str | os.PathLike | None = None, n_images: int = 10,
                     zip: bool = False) -> dict[str, Path]:
    """The folder a coursework submission asks for, from a finished ``eva-utils train`` run.

    Writes ``README.md`` (settings, model, the test accuracy measured now, the history's, per class, curves, the
    ``n_images`` most confident mistakes and their Grad-CAM, observations), its figures, ``metrics.json`` and
    ``history.json``. A ``history.json`` that is not the checkpoint's own (edited, or another run's) is refused.

    Args:
        run_dir: the run's folder (``checkpoint.pt`` and ``history.json``, as ``eva-utils train`` writes them).
        out: where to write (default ``run_dir/submission``).
        overwrite: replace a submission already in ``out``, and a ``<out>.zip`` holding only its files; nothing
            else (a folder holding other files, the run folder or one containing it are refused even so).
        data_dir: where CIFAR-10 is (default: the run's own ``data_dir``); it is not downloaded.
        n_images: misclassified images shown, and explained with Grad-CAM.
        zip: also write the folder as ``<out>.zip`` beside it (``zip`` in the result), to hand in or download.

    Returns:
        Name -> path of every file written (``readme`` is the README).

    Raises:
        UserError: no run there, a history.json damaged or not the checkpoint's, a submission (or its zip) there
            without ``overwrite`` or not a submission's, an ``out`` that is or holds the run or other files, a model
            without ResNet stages (MSD-Net: ``eva-utils msd``), no data.
    """
    run = Path(run_dir).expanduser()
    checkpoint, history_file = run / "checkpoint.pt", run / "history.json"
    for needed in (checkpoint, history_file):
        if not needed.is_file():
            raise DataNotFoundError(f"{run} is not a finished run: {needed.name} is missing "
                                    "(give the --out folder of eva-utils train)")
    history = History.load(history_file)  # every input checked before anything is written
    if not len(history):
        raise UserError(f"{history_file} holds no epochs: train for at least one epoch first")
    ckpt = load_checkpoint(checkpoint)  # read once: its settings, its history and its model
    check_history(ckpt, history, str(history_file))  # the checkpoint's own history: refused if it differs
    config = ckpt.get("config") or {}
    model = rebuild_model(ckpt, checkpoint)
    if not is_resnet(model):
        raise UserError(f"{run} holds a {type(model).__name__}; the submission kit explains ResNet stages "
                        "(for MSD-Net use eva-utils msd)")
    out = Path(out).expanduser() if out is not None else run / "submission"
    archive = _claim_archive(Path(f"{out}.zip"), overwrite) if zip else None
    out = claim_output_folder(out, overwrite=overwrite, owned=SUBMISSION_FILES, exclusive=True, protect=[run],
                              kind="a submission")
    test_set = load_dataset(config.get("data", "cifar10"), train=False, transform=test_transforms(),
                            root=data_dir or config.get("data_dir", "./data"), download=False)
    with staged_folder(out, SUBMISSION_FILES) as staging:  # an earlier submission stays whole until this one is
        written = _write_submission_files(run, staging, model, test_set, history, config, n_images)
        if archive is not None:  # zipped before the swap: a failed zip leaves the earlier folder as it was too
            _archive(staging, archive)
    return {**{name: out / path.name for name, path in written.items()}, **({"zip": archive} if archive else {})}


def _claim_archive(archive: Path, overwrite: bool) -> Path:
    """:func:`claim_output_file` for the zip: ``overwrite`` replaces only a zip of ``SUBMISSION_FILES`` (ours)."""
    archive, names = claim_output_file(archive, overwrite=overwrite), set()
    if os.path.lexists(archive):  # a broken link too: refused, as a file that is not a zip or not readable
        with contextlib.suppress(OSError, EOFError, ValueError, zipfile.BadZipFile), zipfile.ZipFile(archive) as zipped:
            names = {name.removeprefix("./") for name in zipped.namelist()}
        if not names or not names <= set(SUBMISSION_FILES):
            raise UserError(f"{archive} was not written by eva-utils report (it is not a zip of a submission's "
                            "files), so overwrite does not replace it: move it away or choose another out", param="out")
    return archive


def _write_submission_files(run: Path, out: Path, model: nn.Module, test_set: Any, history: History, config: dict,
                            n_images: int) -> dict[str, Path]:
    """The submission's figures, metrics, history and README, written into the claimed folder ``out``."""
    final = dict(final_train_accuracy=history.train_acc[-1], final_test_accuracy=history.test_acc[-1],
                 final_train_loss=history.train_loss[-1], final_test_loss=history.test_loss[-1],
                 epochs=len(history), settings={k: config[k] for k in _SETTINGS if k in config})
    files = write_report(model, test_set, out, n_misclassified=n_images, n_cam=n_images, extra_metrics=final,
                         caption=f"{config.get('model', 'model')} from {run.name}: {len(history)} epochs")
    files["curves"] = save_figure(plot_history(history, title=f"{run.name}: loss and accuracy per epoch"), out / "curves.png")
    files["history"] = out / "history.json"
    atomic_copy(run / "history.json", files["history"])
    metrics = json.loads(files["metrics"].read_text())
    files["readme"] = out / "README.md"
    readme = _submission_readme(run, config, model, history, metrics, list(test_set.classes),
                                np.asarray(metrics["confusion_matrix"]), n_images)
    atomic_write_text(files["readme"], readme)
    return files


def _archive(folder: Path, archive: Path) -> Path:
    """``folder`` as the zip file ``archive``, written beside it and renamed into place (never half a zip)."""
    partial = archive.with_name(f".{archive.name}.tmp{os.getpid()}")
    try:
        os.replace(shutil.make_archive(str(partial), "zip", root_dir=folder), archive)
    except OSError as exc:  # zipfile names no file: name the archive meant
        raise OSError(exc.errno, exc.strerror or str(exc), str(archive)) from exc
    finally:
        Path(f"{partial}.zip").unlink(missing_ok=True)
    return archive


def _submission_readme(run: Path, config: dict, model: nn.Module, history: History, metrics: dict,
                       classes: list[str], cm: np.ndarray, n_images: int) -> str:
    """The submission's README.md: settings, model, results, figures and observations."""
    return "\n".join((_readme_setup(run, config, model, metrics["accuracy"]), _readme_results(history, metrics),
                      _readme_figures(n_images, _observations(history, metrics, classes, cm))))


def _readme_setup(run: Path, config: dict, model: nn.Module, accuracy: float) -> str:
    """The title (the saved model's accuracy, measured now), the settings and the model."""
    settings = "\n".join(f"| {k} | {config[k]} |" for k in _SETTINGS if k in config)
    stats = summary(model, (1, 3, 32, 32))
    data = Path(str(config.get("data", "cifar10"))).name
    return f"""# {config.get("model", "model")} on {data}: {_percent(accuracy)} test accuracy

Run folder: `{run.name}`. Written by `eva-utils report` from the run's `checkpoint.pt` and `history.json`.

## Hyperparameters

| setting | value |
| --- | --- |
{settings}

## Model

{type(model).__name__}, {stats.total_params:,} parameters ({stats.trainable_params:,} trainable).

```
{stats}
```
"""


def _readme_results(history: History, metrics: dict) -> str:
    """The saved model's accuracy, measured now; the history's numbers, labelled as the history's; per class."""
    per_class = "\n".join(f"| {c} | {'n/a' if a is None else _percent(a)} |" for c, a in metrics["per_class_accuracy"].items())
    note = (", as the history's last epoch recorded" if abs(metrics["accuracy"] - history.test_acc[-1]) < 5e-5 else
            f"; the history's last epoch recorded {_percent(history.test_acc[-1])}, on a part of the test set "
            "(a smoke run with --max-batches) or with other data")
    return f"""## Results

Test accuracy of the saved model, measured again now on all {metrics["images"]} test images:
**{_percent(metrics["accuracy"])}** ({metrics["misclassified"]} misclassified){note}. As `history.json` recorded it:

| history.json | train | test |
| --- | --- | --- |
| final accuracy (epoch {history.epoch[-1]}) | {_percent(history.train_acc[-1])} | {_percent(history.test_acc[-1])} |
| final loss | {history.train_loss[-1]:.4f} | {history.test_loss[-1]:.4f} |
| best test accuracy | | {_percent(max(history.test_acc))} |

Per class (the saved model, measured now):

| class | accuracy |
| --- | --- |
{per_class}
"""


def _readme_figures(n_images: int, observations: list[str]) -> str:
    observed = "\n".join(f"- {line}" for line in observations)
    return f"""## Loss and accuracy curves

![loss and accuracy per epoch](curves.png)

## The {n_images} most confident mistakes

![misclassified test images](misclassified.png)

## Grad-CAM of those mistakes at every stage (layer0 = stem .. layer4)

Each map is scaled to [0, 1] on its own: compare where a map is high, not how strong it is
across images or layers. layer4's map is 4x4 at 32x32 input, so it can only say which region.

![Grad-CAM per stage](gradcam_layers.png)

Confusion matrix: ![confusion matrix](confusion_matrix.png)

## What was observed

Read off the numbers (add your own reading of the figures):

{observed}
"""


# ----------------------------------------------------------------------------- the command


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``report`` on the ``eva-utils`` subcommands; returns its parser."""
    p = subparsers.add_parser("report", description="Write RUN_DIR/submission: README.md (hyperparameters, model "
                              "summary, final accuracy, per-class table, curves, the most confident mistakes and their "
                              "Grad-CAM at every stage), its figures, metrics.json and history.json.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of eva-utils train")
    p.add_argument("--out", help="where to write (default RUN_DIR/submission)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a submission already there (only the files report wrote; nothing else is removed)")
    p.add_argument("--data-dir", help="where CIFAR-10 is (default: the run's own); nothing is downloaded")
    p.add_argument("--images", type=positive_int, default=10, help="mistakes shown and explained (default %(default)s)")
    p.add_argument("--zip", action="store_true", help="also write the folder as a .zip beside it")
    p.set_defaults(func=_cmd_report)
    return p


def _cmd_report(args: argparse.Namespace) -> int:
    files = write_submission(args.run_dir, out=args.out, overwrite=args.overwrite, data_dir=args.data_dir,
                             n_images=args.images, zip=args.zip)
    archive = files.pop("zip", None)
    print(f"wrote the submission into {files['readme'].parent}:")
    for path in sorted(files.values()):
        print(f"  {path.name}")
    if archive is not None:
        print(f"and {archive}")
    return 0


if __name__ == "__main__":  # a module, not a command: say which one
    from eva_utils.apps.cli import not_a_command

    raise SystemExit(not_a_command(__spec__.name, "report"))
