import json
import os
import subprocess
import sys

import pytest

from eva_utils.apps.cli import main
from eva_utils.training import checkpoint

TINY = ["--data", "sample", "--width", "4", "--batch-size", "32", "--max-batches", "2", "--quiet", "--workers", "0",
        "--scheduler", "step"]


def _run(args):
    """Exit status of the command line, whether it returns it or argparse raises SystemExit."""
    try:
        return main(args)
    except SystemExit as exc:
        return exc.code


def _one_line_error(capsys, code, expected_code=2):
    err = capsys.readouterr().err
    assert code == expected_code
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_train_writes_history_checkpoint_and_curves(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "2", "--out", str(out)]) == 0
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == [1, 2]
    assert (out / "curves.png").stat().st_size > 10_000
    ckpt = checkpoint.load_checkpoint(out / "checkpoint.pt")
    assert ckpt["epoch"] == 2 and ckpt["config"]["width"] == 4 and ckpt["config"]["data"] == "sample"

def test_resume_extends_a_step_schedule_but_not_a_finished_one_cycle(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "2", "--scheduler", "step", "--out", str(out)]) == 0
    assert main(["train", *TINY, "--epochs", "3", "--scheduler", "step", "--out", str(out), "--resume"]) == 0
    assert json.loads((out / "history.json").read_text())["epoch"] == [1, 2, 3]
    other = tmp_path / "onecycle"
    assert main(["train", *TINY, "--epochs", "2", "--scheduler", "onecycle", "--out", str(other)]) == 0
    before = (other / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    code = main(["train", *TINY, "--epochs", "3", "--scheduler", "onecycle", "--out", str(other), "--resume"])
    assert "same epochs (2)" in _one_line_error(capsys, code)
    assert (other / "checkpoint.pt").read_bytes() == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "resnet19"], "did you mean resnet18"),
        (["--data", "imagenet"], "valid dataset names: cifar10, sample, or a path to an .npz file"),
        (["--scheduler", "cyclic"], "valid scheduler names"),
        (["--optimizer", "rmsprop"], "valid optimizer names: adam, sgd"),
        (["--epochs", "0"], "--epochs: must be a positive integer"),
        (["--batch-size", "-4"], "--batch-size: must be a positive integer"),
        (["--lr", "0"], "--lr: must be a positive number"),
        (["--lr", "abc"], "--lr: expected a positive number"),
        (["--weight-decay", "-1"], "weight_decay must be a number >= 0"),
        (["--weight-decay", "nan"], "weight_decay must be a number >= 0"),
        (["--workers", "-1"], "workers must be 0"),
        (["--seed", str(10**23)], "seed must be a whole number"),
        (["--device", "mps"], "device 'mps' is not supported"),
        (["--device", "meta"], "device 'meta' is not supported"),
    ],
)
def test_bad_training_settings_exit_2_with_one_line(tmp_path, capsys, args, message):
    code = _run(["train", *TINY, "--out", str(tmp_path / "r"), *args])
    err = _one_line_error(capsys, code)
    assert message in err
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_argparse_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--epochs", "0"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--epochs" in err


def test_missing_cifar10_without_download(tmp_path, capsys):
    code = main(["train", "--data", "cifar10", "--no-download", "--data-dir", str(tmp_path / "none"),
                 "--out", str(tmp_path / "r"), "--quiet"])
    err = _one_line_error(capsys, code)
    assert "download=True" in err and "(on the command line: leave out --no-download, --data)" in err


def test_existing_run_is_not_overwritten(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    before = (out / "checkpoint.pt").read_bytes()
    capsys.readouterr()
    code = main(["train", *TINY, "--epochs", "1", "--out", str(out)])
    assert "--resume" in _one_line_error(capsys, code)
    assert (out / "checkpoint.pt").read_bytes() == before


def test_resume_from_another_architecture(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    capsys.readouterr()
    code = main(["train", *TINY, "--epochs", "2", "--model", "resnet34", "--out", str(out), "--resume"])
    err = _one_line_error(capsys, code)
    assert "made for resnet18" in err and "does not fit" in err


def test_resume_from_a_corrupt_checkpoint_keeps_the_file(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(out)]) == 0
    path = out / "checkpoint.pt"
    damaged = path.read_bytes()[:5000]
    path.write_bytes(damaged)
    capsys.readouterr()
    code = main(["train", *TINY, "--epochs", "2", "--out", str(out), "--resume"])
    assert "truncated or corrupt" in _one_line_error(capsys, code)
    assert path.read_bytes() == damaged


def test_console_script_reports_user_errors_without_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "eva_utils", "train", "--model", "nope", "--data", "sample", "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1
    assert "unknown model 'nope'" in proc.stderr


def test_demo_writes_every_file(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--epochs", "2", "--max-batches", "2", "--out", str(out), "--quiet"]) == 0
    for name in ["history.json", "checkpoint.pt", "curves.png", "misclassified.png", "confusion_matrix.png",
                 "samples.png", "gradcam_layers.png", "metrics.json", "cam_evolution.png", "cam_evolution.gif"]:
        assert (out / name).is_file(), name
    from PIL import Image

    with Image.open(out / "cam_evolution.gif") as gif:  # the maps before training and after each epoch
        assert gif.n_frames == 3
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["images"] == 1000 and len(metrics["per_class_accuracy"]) == 10
    assert "not a full training" in capsys.readouterr().out
    shipped = json.loads((out / "pretrained" / "metrics.json").read_text())  # the shipped model's figures, apart
    for name in ["curves.png", "misclassified.png", "confusion_matrix.png", "gradcam_layers.png"]:
        assert (out / "pretrained" / name).is_file(), name
    from eva_utils.models.shipped import pretrained_info

    assert shipped["accuracy"] == pytest.approx(pretrained_info("resnet18_w16_cifar10").test_accuracy, abs=2e-3)


def test_demo_figures_are_the_shipped_models(tmp_path):
    figures = tmp_path / "images"
    assert main(["demo", "--epochs", "2", "--max-batches", "2", "--out", str(tmp_path / "demo"), "--quiet",
                 "--figures", str(figures)]) == 0
    assert sorted(p.name for p in figures.iterdir()) == ["confusion_matrix.png", "curves.png", "gradcam_layers.png",
                                                         "misclassified.png", "samples.png"]
    for name in ["curves.png", "gradcam_layers.png"]:
        assert (figures / name).read_bytes() == (tmp_path / "demo" / "pretrained" / name).read_bytes()


def _folder_bytes(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_resume_into_another_runs_folder_is_refused_and_leaves_it_byte_identical(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(a)]) == 0
    assert main(["train", *TINY, "--epochs", "1", "--seed", "1", "--out", str(b)]) == 0
    before = _folder_bytes(b)
    proc = subprocess.run(
        [sys.executable, "-m", "eva_utils", "train", *TINY, "--epochs", "2", "--out", str(b),
         "--resume", str(a / "checkpoint.pt")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert "holds another run" in proc.stderr and "--overwrite" in proc.stderr
    assert _folder_bytes(b) == before


def test_resume_into_a_new_folder_or_its_own_folder_works(tmp_path):
    a = tmp_path / "A"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(a)]) == 0
    assert main(["train", *TINY, "--epochs", "2", "--out", str(tmp_path / "C"), "--resume", str(a / "checkpoint.pt")]) == 0
    assert json.loads((tmp_path / "C" / "history.json").read_text())["epoch"] == [1, 2]
    assert main(["train", *TINY, "--epochs", "2", "--out", str(a), "--resume", str(a / "checkpoint.pt")]) == 0
    assert json.loads((a / "history.json").read_text())["epoch"] == [1, 2]


def test_out_that_is_a_file_is_refused_before_training(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("mine")
    code = main(["train", *TINY, "--out", str(target)])
    assert "is a file, not a folder" in _one_line_error(capsys, code)
    assert target.read_text() == "mine"


def test_train_on_an_npz_file(tmp_path):
    import numpy as np

    from eva_utils import data

    sample = data.load_sample(train=True)
    path = tmp_path / "mine.npz"
    np.savez(path, train_images=sample.images[::20], train_labels=sample.labels[::20])
    out = tmp_path / "run"
    assert main(["train", *TINY, "--data", str(path), "--epochs", "1", "--out", str(out)]) == 0
    ckpt = checkpoint.load_checkpoint(out / "checkpoint.pt")
    assert ckpt["config"]["data"] == str(path)


@pytest.mark.parametrize("content, message", [
    (b"not an archive", "not a readable .npz file"),
    (None, "no such file"),
])
def test_bad_npz_through_the_command_line(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    if content is not None:
        path.write_bytes(content)
    proc = subprocess.run(
        [sys.executable, "-m", "eva_utils", "train", *TINY, "--data", str(path), "--out", str(tmp_path / "r")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr
    assert message in proc.stderr
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


def test_cifar10_download_without_network_is_one_line(tmp_path, capsys, monkeypatch):
    import urllib.error

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.datasets.cifar.download_and_extract_archive", no_network)
    code = main(["train", "--data", "cifar10", "--data-dir", str(tmp_path / "d"), "--device", "cpu", "--quiet",
                 "--out", str(tmp_path / "r")])
    err = _one_line_error(capsys, code)
    assert "download from www.cs.toronto.edu failed" in err and "data='sample'" in err and ".npz" in err
    assert "(on the command line: --data)" in err


@pytest.mark.parametrize("name", ["hello", "q0", "j", "truncated", "code", "object"])
def test_every_command_refuses_a_bad_torch_file_in_one_line(tmp_path, name, bad_torch_files):
    path = bad_torch_files(tmp_path / "files")[name]
    before = path.read_bytes()
    sample_image = tmp_path / "img.png"
    from PIL import Image

    from eva_utils import data

    Image.fromarray(data.load_sample(train=False).images[0]).save(sample_image)
    out = tmp_path / "run"
    (out).mkdir()
    import shutil

    shutil.copyfile(path, out / "checkpoint.pt")
    commands = {
        "train": ["train", *TINY, "--out", str(out), "--resume"],
        "msd": ["msd", "--checkpoint", str(path), "--data", "sample"],
        "cam": ["cam", "--model_path", str(path), "--arch", "eva_utils.resnet18", "--images_path", str(sample_image),
                "--save_dir", str(tmp_path / "cam")],
    }
    for command, args in commands.items():
        proc = subprocess.run([sys.executable, "-m", "eva_utils", *args], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2, (command, proc.stderr)
        assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, (command, proc.stderr)
        expected = {"code": "contains code (posix.system)", "object": "pickled Python object"}.get(name, "truncated or corrupt")
        assert expected in proc.stderr, (command, proc.stderr)
    assert path.read_bytes() == before and (out / "checkpoint.pt").read_bytes() == before
    assert not (tmp_path / "files" / "PWNED").exists()


def test_a_gpu_that_does_not_exist_is_named(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)  # a machine with one GPU
    monkeypatch.setattr("torch.cuda.device_count", lambda: 1)
    code = main(["train", *TINY, "--device", "cuda:7", "--out", str(tmp_path / "r")])
    assert "device 'cuda:7' does not exist: this machine has 1 GPU: cuda:0" in _one_line_error(capsys, code)
    assert not (tmp_path / "r").exists()


def test_resume_into_a_new_folder_with_nothing_left_to_train_still_holds_the_run(tmp_path, capsys):
    a, c = tmp_path / "A", tmp_path / "C"
    assert main(["train", *TINY, "--epochs", "1", "--out", str(a)]) == 0
    assert main(["train", *TINY, "--epochs", "1", "--out", str(c), "--resume", str(a / "checkpoint.pt")]) == 0
    assert (c / "checkpoint.pt").read_bytes() == (a / "checkpoint.pt").read_bytes()
    assert main(["train", *TINY, "--epochs", "2", "--out", str(c), "--resume"]) == 0  # and it continues there


def test_a_width_that_would_not_fit_in_memory_is_refused(tmp_path, capsys):
    code = main(["train", *TINY, "--width", "100000", "--out", str(tmp_path / "r")])
    assert "width must be at most 4096" in _one_line_error(capsys, code)


# ----------------------------------------------------------------------------- a thin dispatcher, the flags


def test_help_lists_every_command_without_importing_one():
    code = ("import sys; sys.argv = ['eva-utils', '--help']\nfrom eva_utils.apps import cli\n"
            "try: cli.main()\nexcept SystemExit: pass\n"
            "print(sorted(m for m in sys.modules if m.startswith(('eva_utils.apps.', 'torch'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    from eva_utils.apps.cli import COMMANDS

    for name, command in COMMANDS.items():
        assert name in proc.stdout and command.help.split()[0] in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "['eva_utils.apps.argtypes', 'eva_utils.apps.cli']"


def test_train_builds_only_its_own_parser():
    code = ("import sys\nfrom eva_utils.apps.cli import build_parser\nparser = build_parser(['train'])\n"
            "sub = next(a for a in parser._actions if a.dest == 'command')\n"
            "print({name: len(p._actions) > 0 for name, p in sub.choices.items()})\n"
            "print(sorted(m for m in sys.modules if m.startswith('eva_utils.apps.')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    built, apps = proc.stdout.strip().splitlines()[-2:]
    assert built == str({name: name == "train" for name in ("train", "demo", "report", "cam", "msd", "app", "fork")})
    others = {"eva_utils.apps.cli_cam", "eva_utils.apps.cli_msd", "eva_utils.apps.cli_app", "eva_utils.apps.report",
              "eva_utils.apps.fork"}  # the modules of the other commands
    assert "eva_utils.apps.cli_train" in apps and not {m for m in others if repr(m) in apps}, apps


def test_every_command_still_builds():
    from eva_utils.cli import build_parser  # the 0.1.0 path

    parser = build_parser()
    for argv in (["train"], ["demo"], ["report", "r"], ["cam", "--model", "m", "--images-path", "i"], ["msd"], ["app"],
                 ["fork", "u"]):
        assert callable(parser.parse_args(argv).func)


def test_a_library_parameter_is_printed_with_its_flag():
    from eva_utils.apps.argtypes import error_line
    from eva_utils.core.errors import UserError

    line = error_line("train", UserError("mixed precision needs a GPU: pass amp=False", param="amp"))
    assert line == "eva-utils train: error: mixed precision needs a GPU: pass amp=False (on the command line: --no-amp)"
    assert error_line("train", UserError("use --no-amp", param="amp")) == "eva-utils train: error: use --no-amp"
    two = error_line("train", UserError("r holds a run: continue it with resume=r/checkpoint.pt, or pass overwrite=True",
                                        param="overwrite"))
    assert two.endswith("(on the command line: --resume, --overwrite)")
    # a message that does not name its parameter is not told a flag (a file that runs code: never --unsafe-pickle)
    assert error_line("cam", UserError("f.pt contains code", param="unsafe_pickle")) == "eva-utils cam: error: f.pt contains code"


def test_a_missing_gpu_is_told_the_flag(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "eva_utils", "train", *TINY, "--device", "cuda", "--out",
                           str(tmp_path / "r")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "no GPU is available: use device='cpu'" in proc.stderr and "(on the command line: --device)" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_recipe_page24_trains_the_custom_resnet_with_the_flags_given_winning(tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--recipe", "page24", "--data", "sample", "--width", "4", "--batch-size", "256", "--epochs", "2",
                 "--max-batches", "2", "--quiet", "--workers", "0", "--lr", "find", "--out", str(out)])
    assert code == 0
    config = checkpoint.load_checkpoint(out / "checkpoint.pt")["config"]
    assert (config["model"], config["augmentation"], config["label_smoothing"]) == ("custom_resnet", "page", 0.0)  # the recipe's
    assert (config["width"], config["batch_size"], config["epochs"]) == (4, 256, 2)  # the flags'
    assert config["lr_find"] and config["lr"] != 0.4  # the range test's peak, not the recipe's
    assert (out / "lr_finder.png").stat().st_size > 10_000
    assert f"peak lr {config['lr']:.3g}" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--recipe", "page42"], "unknown recipe 'page42'; did you mean page24?"),
    (["--lr", "find", "--scheduler", "step"], "lr_find picks the peak of a one-cycle schedule"),
    (["--lr", "finder"], "argument --lr: expected a positive number, got 'finder'"),
    (["--augmentation", "heavy"], "unknown augmentation 'heavy'"),
])
def test_bad_recipe_settings_are_one_line(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    err = _one_line_error(capsys, _run(["train", "--data", "sample", "--out", str(out), *args]))
    assert message in err
    assert not out.exists()


def test_augment_on_device_trains_on_the_cpu_and_is_kept_in_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--epochs", "1", "--augment-on", "device", "--device", "cpu", "--out", str(out)]) == 0
    assert checkpoint.load_checkpoint(out / "checkpoint.pt")["config"]["augment_on"] == "device"


def test_a_bad_augment_on_is_one_line_naming_the_flag(tmp_path, capsys):
    out = tmp_path / "run"
    err = _one_line_error(capsys, _run(["train", "--data", "sample", "--augment-on", "gpu", "--out", str(out)]))
    assert "unknown augment_on 'gpu'" in err and "valid augment_on names: auto, cpu, device" in err
    assert err.strip().endswith("(on the command line: --augment-on)") and not out.exists()
