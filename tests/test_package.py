"""The package surface: what ``import eva_utils`` gives and what it leaves alone."""

import importlib
import re
import subprocess
import sys
import warnings
from pathlib import Path

import eva_utils


def test_every_exported_name_exists():
    missing = [name for name in eva_utils.__all__ if not hasattr(eva_utils, name)]
    assert not missing


def test_version_is_the_one_setup_installs():
    setup = (Path(__file__).parents[1] / "setup.py").read_text()
    assert re.search(r'version="([^"]+)"', setup).group(1) == eva_utils.__version__


def test_import_leaves_pyplot_and_the_network_alone():
    # pyplot would pick a GUI backend in scripts; albumentations would ask PyPI for updates on import.
    code = (
        "import socket, sys\n"
        "def refuse(*a, **k): raise SystemExit('import eva_utils opened a network connection')\n"
        "socket.socket.connect = refuse\n"
        "import eva_utils\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'import eva_utils imported matplotlib.pyplot'\n"
        "extras = [m for m in ('gradio', 'tensorboard', 'torch.utils.tensorboard') if m in sys.modules]\n"
        "assert not extras, f'import eva_utils imported the optional {extras}'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]



# Every public name of eva_utils 0.1.0 (each module's __all__ at the release): they keep importing,
# some as deprecation aliases of their new homes.
RELEASED = {
    "eva_utils": (
        "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "CheckpointError", "DataNotFoundError", "History",
        "TrainConfig", "UserError", "__version__", "cam", "checkpoint", "confusion_matrix", "data", "denormalize",
        "evaluate", "evaluation", "find_lr", "fit", "get_cifar10", "get_model", "inputs", "layer_cams", "load_sample",
        "make_loader", "make_optimizer", "make_scheduler", "misclassified", "models", "multiexit", "overlay",
        "per_class_accuracy", "plot_confusion_matrix", "plot_history", "plots", "predict", "recipe", "resnet18",
        "resnet34", "resnet_layers", "run_training", "set_seed", "show_layer_cams", "show_misclassified",
        "show_samples", "sources", "summary", "test_transforms", "train_one_epoch", "train_transforms", "training",
        "transforms",
    ),
    "eva_utils.argtypes": (
        "finite_float", "non_negative_int", "positive_float", "positive_int",
    ),
    "eva_utils.cam": (
        "CAM_METHODS", "class_probs", "conv_layers", "count_from_back", "layer_cams", "overlay", "pointing_game",
        "pointing_hits", "predict_targets", "resnet_layers", "resolve_layers", "show_cams",
    ),
    "eva_utils.cam_cli": (
        "add_parser", "main", "run",
    ),
    "eva_utils.checkpoint": (
        "FORMAT", "NotATrainingCheckpoint", "RefusedPickleError", "check_compatible", "load_checkpoint",
        "load_trained_model", "restore_training_state", "safe_load", "save_checkpoint",
    ),
    "eva_utils.cli": (
        "Parser", "build_parser", "main",
    ),
    "eva_utils.data": (
        "ArrayDataset", "CIFAR10_CLASSES", "CIFAR10_MEAN", "CIFAR10_STD", "DATASETS", "SeededLoader", "denormalize",
        "get_cifar10", "load_dataset", "load_npz", "load_sample", "make_loader", "to_chw_float",
    ),
    "eva_utils.errors": (
        "CheckpointError", "DataNotFoundError", "UserError", "first_line", "refused_global", "unknown_name",
    ),
    "eva_utils.evaluation": (
        "Predictions", "accuracy", "confusion_matrix", "misclassified", "model_device_dtype", "output_probs",
        "per_class_accuracy", "predict",
    ),
    "eva_utils.inputs": (
        "IMAGENET_MEAN", "IMAGENET_STD", "IMAGE_EXTENSIONS", "ImageFile", "PRESETS", "Preset", "UnreadableImageError",
        "cifar_preset", "find_images", "get_preset", "imagenet_preset", "read_image",
    ),
    "eva_utils.models": (
        "BasicBlock", "MODELS", "MSDNet", "MSDNetConfig", "PRETRAINED", "ResNet", "download_msdnet_gcn_checkpoint",
        "get_model", "load_msdnet_gcn_checkpoint", "model_key", "msdnet", "pretrained", "resnet18", "resnet34",
        "summary",
    ),
    "eva_utils.models.msdnet": (
        "MSDNET_GCN_CIFAR10_PAGE", "MSDNET_GCN_CIFAR10_URL", "MSDNet", "MSDNetConfig",
        "download_msdnet_gcn_checkpoint", "infer_msdnet_config", "load_msdnet_gcn_checkpoint", "msdnet",
    ),
    "eva_utils.models.registry": (
        "MODELS", "get_model", "model_key",
    ),
    "eva_utils.models.resnet": (
        "BasicBlock", "ResNet", "resnet18", "resnet34",
    ),
    "eva_utils.models.shipped": (
        "PRETRAINED", "PretrainedWeights", "export_weights", "pretrained", "pretrained_info", "sha256_of",
        "training_history",
    ),
    "eva_utils.msd_cli": (
        "add_parser", "run",
    ),
    "eva_utils.multiexit": (
        "AnytimeResult", "BLOG_EXITS", "BudgetCurve", "ExitCosts", "ExitPredictions", "anytime_predict",
        "budget_curve", "class_index", "correctness", "default_exits", "default_thresholds", "difficulty",
        "examples_by_difficulty", "exit_accuracy", "exit_cams", "exit_costs", "format_budget_curve",
        "format_class_exit_accuracy", "format_correctness", "format_difficulty_counts", "format_exit_accuracy",
        "per_class_exit_accuracy", "plot_budget_curve", "predict_exits", "select_class", "show_exit_cams",
    ),
    "eva_utils.plots": (
        "plot_confusion_matrix", "plot_history", "save_figure", "show_layer_cams", "show_misclassified",
        "show_samples",
    ),
    "eva_utils.recipe": (
        "TrainConfig", "TrainResult", "check_output_folder", "run_training",
    ),
    "eva_utils.report": (
        "write_pretrained_report", "write_report",
    ),
    "eva_utils.safe_load": (
        "RefusedPickleError", "safe_load",
    ),
    "eva_utils.sources": (
        "Classifier", "WeightsDownloadError", "imagenet_categories", "load_model", "read_labels",
        "torchvision_classifier", "torchvision_names",
    ),
    "eva_utils.training": (
        "EpochStats", "History", "LRFinderResult", "OPTIMIZERS", "SCHEDULERS", "TrainingDivergedError", "amp_dtype",
        "evaluate", "find_lr", "fit", "make_optimizer", "make_scheduler", "mixed_precision", "multi_exit_loss",
        "resolve_device", "set_seed", "train_one_epoch",
    ),
    "eva_utils.transforms": (
        "test_transforms", "train_transforms",
    ),
}


def test_every_public_name_of_the_previous_release_still_imports():
    gone = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # moved names warn when used, not when imported
        for module, names in RELEASED.items():
            mod = importlib.import_module(module)
            gone += [f"{module}.{name}" for name in names if not hasattr(mod, name)]
    assert not gone


PACKAGE = Path(eva_utils.__file__).parent


# The layers, and that no import runs up them or in a circle: tests/test_layers.py


def test_import_runs_no_albumentations_and_sets_no_variable():
    code = (
        "import os, sys\n"
        "import eva_utils\n"
        "assert 'albumentations' not in sys.modules\n"
        "assert 'NO_ALBUMENTATIONS_UPDATE' not in os.environ\n"
        "eva_utils.test_transforms()\n"  # where albumentations is first used: set just before its import
        "assert os.environ['NO_ALBUMENTATIONS_UPDATE'] == '1' and 'albumentations' in sys.modules\n"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_package_says_it_is_typed():
    assert (PACKAGE / "py.typed").is_file()


COMMAND_MODULES = {  # every module that holds a command, old path or new, and the command it holds
    "eva_utils.fork": "eva-utils fork", "eva_utils.msd_cli": "eva-utils msd", "eva_utils.report": "eva-utils report",
    "eva_utils.app": "eva-utils app", "eva_utils.apps.fork": "eva-utils fork", "eva_utils.apps.cli_msd": "eva-utils msd",
    "eva_utils.apps.cli_app": "eva-utils app", "eva_utils.apps.cli_train": "eva-utils train",
    "eva_utils.apps.report": "eva-utils report",
}


def test_every_module_holding_a_command_runs_it_or_says_which_to_use():
    # python -m eva_utils.report RUN used to do nothing and exit 0; the parser modules run as the command itself
    root = Path(eva_utils.__file__).parent
    guarded = {f"eva_utils.{'.'.join(p.relative_to(root).with_suffix('').parts)}" for p in root.rglob("*.py")
               if 'if __name__ == "__main__":' in p.read_text()}
    assert guarded == {*COMMAND_MODULES, "eva_utils.cli", "eva_utils.apps.cli", "eva_utils.cam_cli", "eva_utils.apps.cli_cam"}
    done = subprocess.run([sys.executable, "-m", "eva_utils.cli", "--version"], capture_output=True, text=True,
                          timeout=120, cwd=root.parent)
    assert done.returncode == 0 and done.stdout.startswith("eva-utils "), done.stderr


def test_facades_of_commands_say_which_command_to_use_when_run_with_python_m():
    for module, command in COMMAND_MODULES.items():
        done = subprocess.run([sys.executable, "-m", module, "https://github.com/a/b"], capture_output=True, text=True,
                              timeout=120, cwd=Path(eva_utils.__file__).parents[1])
        assert done.returncode == 2, (module, done.stderr[-2000:])
        assert len(done.stderr.strip().splitlines()) == 1 and command in done.stderr, done.stderr
        assert f"python -m eva_utils {command.split()[1]}" in done.stderr
