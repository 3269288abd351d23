"""The ``eva-utils`` command line: ``train``, ``demo``, ``report``, ``cam``, ``msd``, ``app`` and ``fork``.

    eva-utils demo                                   # offline, CPU, bundled CIFAR-10 sample
    eva-utils train --epochs 20 --out runs/r18       # the default recipe on full CIFAR-10
    eva-utils train --resume --out runs/r18          # continue runs/r18/checkpoint.pt

User errors (a bad name, a missing file, a corrupt checkpoint) print one line and exit
with status 2; nothing is overwritten.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from eva_utils import __version__
from eva_utils.apps import cli_cam as cam_cli
from eva_utils.apps import cli_msd as msd_cli
from eva_utils.apps.app import DEFAULT_SOURCE, Explorer, build_app, write_space
from eva_utils.apps.argtypes import Parser, non_negative_int, positive_float, positive_int, run_parsed
from eva_utils.apps.fork import point_at_fork
from eva_utils.apps.report import write_pretrained_report, write_report, write_submission
from eva_utils.core.devices import resolve_device
from eva_utils.core.errors import UserError, first_line
from eva_utils.training import distributed
from eva_utils.training.engine import TrainingDivergedError
from eva_utils.training.recipe import TrainConfig, check_output_folder, run_training

__all__ = ["Parser", "build_parser", "main"]


def _add_training_options(p: argparse.ArgumentParser, defaults: object) -> None:
    """Options shared by ``train`` and ``demo``; defaults come from a TrainConfig."""
    g = p.add_argument_group("model and data")
    g.add_argument("--model", default=defaults.model, help="resnet18, resnet34 or msdnet (10 exits) (default %(default)s)")
    g.add_argument("--width", type=positive_int, default=defaults.width, help="channels of the first stage (default %(default)s; 16 for CPU)")
    g.add_argument("--data", default=defaults.data, help="cifar10 (downloads), sample (bundled, offline) or a path to an .npz file with "
                        "train_images/train_labels (uint8 HWC RGB) and optionally test_images/test_labels, classes "
                        "(default %(default)s)")
    g.add_argument("--data-dir", default=defaults.data_dir, help="where CIFAR-10 is or goes (default %(default)s)")
    g.add_argument("--no-download", dest="download", action="store_false", default=defaults.download,
                   help="fail instead of downloading CIFAR-10")
    g = p.add_argument_group("training")
    g.add_argument("--epochs", type=positive_int, default=defaults.epochs, help="default %(default)s")
    g.add_argument("--batch-size", type=positive_int, default=defaults.batch_size, help="default %(default)s")
    g.add_argument("--optimizer", default=defaults.optimizer, help="sgd or adam (default %(default)s)")
    g.add_argument("--scheduler", default=defaults.scheduler, help="onecycle, step, cosine or none (default %(default)s)")
    g.add_argument("--lr", type=positive_float, default=defaults.lr, help="peak lr for onecycle, else initial (default %(default)s)")
    g.add_argument("--weight-decay", type=float, default=defaults.weight_decay, help="default %(default)s")
    g.add_argument("--label-smoothing", type=float, default=defaults.label_smoothing, help="default %(default)s")
    g.add_argument("--no-augment", dest="augment", action="store_false", default=defaults.augment,
                   help="train without augmentation")
    g.add_argument("--seed", type=int, default=defaults.seed, help="default %(default)s")
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
    g = p.add_argument_group("watching the run")
    g.add_argument("--track-cams", type=non_negative_int, default=defaults.track_cams, metavar="N",
                   help="follow the Grad-CAM of N test images (of different classes) through training: "
                        "cam_evolution.png and .gif in --out (default %(default)s)")
    g.add_argument("--track-layers", nargs="+", default=list(defaults.track_layers), metavar="LAYER",
                   help="the layers of the tracked maps (default: %(default)s)")
    g.add_argument("--tensorboard", metavar="DIR", default=defaults.tensorboard,
                   help='write TensorBoard logs (loss, accuracy, lr per step, tracked maps) into DIR; '
                        'needs pip install "eva-utils[tensorboard]"')


def _config_from_args(args: argparse.Namespace, base: object) -> object:
    settings = base.to_dict()
    settings.update({k: v for k, v in vars(args).items() if k in settings})
    return TrainConfig.from_dict(settings)


def _written(result: object) -> list[Path]:
    """The files a training run wrote, for the closing lines."""
    return list(result.files.values())


def _resume_path(args: argparse.Namespace) -> Path | None:
    if args.resume is None:
        return None
    return Path(args.resume) if args.resume else Path(args.out) / "checkpoint.pt"


def _without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` less ``--nproc N`` (the processes it starts run the rest)."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            kept.append(arg)
    return kept


def _cmd_train(args: argparse.Namespace) -> int:
    config = _config_from_args(args, TrainConfig())
    if args.nproc > 1 and not distributed.under_torchrun():  # start torchrun's processes, each running this command
        config.validate()
        distributed.per_process_batch(config.batch_size, args.nproc)
        check_output_folder(Path(config.out), _resume_path(args), args.overwrite)
        return distributed.launch(args.nproc, _without_nproc(args.argv))
    try:
        result = run_training(config, resume=_resume_path(args), overwrite=args.overwrite)
        group = distributed.current()
    finally:
        distributed.leave()
    if group is not None and not group.is_main:
        return 0
    h = result.history
    if len(h):
        print(f"done: {len(h)} epochs, test accuracy {100 * h.test_acc[-1]:.2f}% (best {100 * max(h.test_acc):.2f}%)")
    print("wrote " + ", ".join(str(path) for path in _written(result)))
    if result.files.get("tensorboard"):
        print(f"see the curves with: tensorboard --logdir {result.files['tensorboard']}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    config = _config_from_args(args, TrainConfig.demo())
    result = run_training(config, resume=_resume_path(args), overwrite=args.overwrite)
    files = write_report(result.model, result.test_loader.dataset, result.out, train_set=result.train_set,
                         caption=f"the demo's small model: {len(result.history)} epochs on the bundled sample, on the CPU")
    shipped = write_pretrained_report(result.out / "pretrained")
    if args.figures:
        figures = Path(args.figures)
        figures.mkdir(parents=True, exist_ok=True)
        for path in sorted(shipped.values()):
            if path.suffix == ".png":
                shutil.copyfile(path, figures / path.name)
        shutil.copyfile(result.out / "samples.png", figures / "samples.png")
        print(f"copied the shipped model's figures (and the augmented samples) into {figures}")
    h = result.history
    print(f"demo done in {time.perf_counter() - start:.0f}s: {len(h)} epochs on the bundled sample, "
          f"test accuracy {100 * h.test_acc[-1]:.1f}% (a short CPU run, not a full training)")
    for path in [*_written(result), *files.values()]:
        print(f"  {path}")
    print(f"the shipped model's figures (trained on all 50,000 CIFAR-10 images), in {result.out / 'pretrained'}:")
    for path in shipped.values():
        print(f"  {path}")
    return 0


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


def _cmd_app(args: argparse.Namespace) -> int:
    if args.space:
        written = write_space(args.space, args.model, repo_url=args.repo_url, overwrite=args.overwrite)
        print(f"wrote a Hugging Face Space into {args.space}: {', '.join(p.name for p in written)}")
        print(f"try it here first: cd {args.space} && python app.py")
        return 0
    explorer = Explorer.from_source(args.model, arch=args.arch, weights=args.weights,
                                    device=resolve_device(args.device), unsafe_pickle=args.unsafe_pickle)
    page = build_app(explorer)
    print(f"model: {explorer.classifier.description}")
    try:
        page.launch(server_name=args.host, server_port=args.port, share=args.share, inbrowser=False, quiet=True)
    except OSError as exc:  # the port is taken, the host is not this machine's, ...
        raise UserError(f"cannot serve on {args.host}:{args.port} ({first_line(exc)}): choose another --port") from exc
    return 0


def _cmd_fork(args: argparse.Namespace) -> int:
    changed = point_at_fork(args.url, root=args.repo, branch=args.branch)
    if not changed:
        print(f"the notebooks and README already point at {args.url} ({args.branch}); nothing changed")
    for path in changed:
        print(f"pointed {path} at {args.url} ({args.branch})")
    if changed:
        print("commit and push these files; Colab then installs and opens your fork")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``eva-utils`` parser with its subcommands."""

    parser = Parser(prog="eva-utils", description="Train CNNs on CIFAR-10 and look inside them with Grad-CAM.")

    parser.add_argument("--version", action="version", version=f"eva-utils {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,demo,report,cam,msd,app,fork}")
    p = sub.add_parser("train", help="train a ResNet on CIFAR-10 (default: the 20-epoch ResNet18 recipe)",
                       description="Train a ResNet on CIFAR-10; writes history.json, checkpoint.pt and curves.png into --out.")
    _add_training_options(p, TrainConfig())
    g = p.add_argument_group("several GPUs (PyTorch DDP)")
    g.add_argument("--nproc", type=positive_int, default=1, metavar="N",
                   help="train on N processes of this machine (one per GPU; gloo on the CPU with --device cpu), "
                        "as torchrun --standalone --nproc-per-node N does; --batch-size stays the global batch")
    g.add_argument("--sync-bn", action="store_true", help="with several processes: BatchNorm over the global batch")
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("demo", help="offline CPU demo on the bundled CIFAR-10 sample (about a minute)",
                       description="Train a narrow ResNet18 on the bundled CIFAR-10 sample on the CPU and write "
                                   "curves, misclassified images, a confusion matrix and per-layer Grad-CAM into --out; "
                                   "then the same figures of the model that ships with the package (trained on all of "
                                   "CIFAR-10) into --out/pretrained.")
    _add_training_options(p, TrainConfig.demo())
    p.add_argument("--figures", metavar="DIR",
                   help="also copy the shipped model's figures (and the augmented samples) into DIR (images/ for the README)")
    p.set_defaults(func=_cmd_demo)
    p = sub.add_parser("report", help="turn a training run into a coursework submission folder",
                       description="Write RUN_DIR/submission: README.md (hyperparameters, model summary, final accuracy, "
                                   "per-class table, curves, the most confident mistakes and their Grad-CAM at every "
                                   "stage), its figures, metrics.json and history.json.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="the --out folder of eva-utils train")
    p.add_argument("--out", help="where to write (default RUN_DIR/submission)")
    p.add_argument("--overwrite", action="store_true", help="replace a submission already there")
    p.add_argument("--data-dir", help="where CIFAR-10 is (default: the run's own); nothing is downloaded")
    p.add_argument("--images", type=positive_int, default=10, help="mistakes shown and explained (default %(default)s)")
    p.add_argument("--zip", action="store_true", help="also write the folder as a .zip beside it")
    p.set_defaults(func=_cmd_report)
    p = sub.add_parser("app", help="an interactive Grad-CAM explorer in the browser (needs eva-utils[app])",
                       description="Serve a page that explains images with Grad-CAM at every stage of a model, and "
                                   "browses its most confident mistakes. Needs Gradio: pip install \"eva-utils[app]\".")
    p.add_argument("model", nargs="?", default=DEFAULT_SOURCE,
                   help="what eva-utils cam accepts: pretrained:NAME, a checkpoint, a torchvision name, a state dict "
                        "with --arch (default %(default)s)")
    p.add_argument("--arch", help="architecture of a state dict or TorchScript file")
    p.add_argument("--weights", default="default", help="for a torchvision name: default (ImageNet) or none")
    p.add_argument("--unsafe-pickle", action="store_true", help="allow a fully pickled model (can run code)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default %(default)s: this machine only)")
    p.add_argument("--port", type=positive_int, default=7860, help="default %(default)s")
    p.add_argument("--share", action="store_true", help="also a public gradio.live link (only when asked)")
    p.add_argument("--space", metavar="DIR", help="write a Hugging Face Space folder instead of serving")
    p.add_argument("--repo-url", help="with --space: install eva_utils from this repository")
    p.add_argument("--overwrite", action="store_true", help="with --space: write into a folder that has files")
    p.set_defaults(func=_cmd_app)
    p = sub.add_parser("fork", help="point the notebooks' install cell and Colab badges at your fork",
                       description="Rewrite REPO_URL in every notebook and the Colab badges in the notebooks and README "
                                   "so that Colab installs and opens your fork, not the upstream repository.")
    p.add_argument("url", metavar="URL", help="your fork: https://github.com/<you>/<repo>")
    p.add_argument("--branch", default="main", help="the branch the Colab badges open (default %(default)s)")
    p.add_argument("--repo", default=".", help="the fork's checkout (default: the current folder)")
    p.set_defaults(func=_cmd_fork)

    cam_cli.add_parser(sub)
    msd_cli.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for user errors, 1 for a diverged training)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    parser.set_defaults(argv=argv)  # what train --nproc hands on to the processes it starts
    return run_parsed(parser, argv, diverged=TrainingDivergedError)


if __name__ == "__main__":
    sys.exit(main())
