"""Tests for ``eva-utils cam`` (eva_utils/cam_cli.py) and the layer helpers it adds to eva_utils.cam.

The command runs in-process through ``eva_utils.cli.main`` on small models (an eva_utils
ResNet18 of width 8 at 32x32, torchvision's ResNet18 with random weights at 64x64) and real
CIFAR-10 images from the bundled sample; one run goes through ``python -m eva_utils.cam_cli``.
Nothing downloads.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

from eva_utils import data, models, plots
from eva_utils.apps.cli import main
from eva_utils.core.errors import UserError
from eva_utils.explain import cam
from eva_utils.models import loading as sources
from eva_utils.training import checkpoint

REPO = Path(__file__).parents[2]
TV = ["--model_path", "resnet18", "--weights", "none", "--input-size", "64"]


def _run(args):
    """Exit status of the command line, whether it returns it or argparse raises SystemExit."""
    try:
        return main(["cam", *map(str, args)])
    except SystemExit as exc:
        return exc.code


def _one_line_error(capsys, code):
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


def _pngs(folder: Path) -> list[str]:
    names = sorted(p.name for p in folder.glob("*.png"))
    for name in names:
        with Image.open(folder / name) as image:
            image.verify()  # a complete, valid PNG
        with Image.open(folder / name) as image:
            width, height = image.size
        assert image.format == "PNG" and 600 < width < 2500 and 150 < height < 600, (name, image.size)
    return names


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """Real CIFAR-10 test images in class folders, plus a grey, an RGBA, a corrupt file and a note.

    Sorted, the folder lists: bad.png (0), grey.png (1), rgba.png (2), cat/* (3, 4), dog/* (5, 6), ship/* (7, 8).
    """
    root = tmp_path_factory.mktemp("images")
    sample = data.load_sample(train=False)
    for c in (3, 5, 8):
        folder = root / sample.classes[c]
        folder.mkdir()
        for row in np.flatnonzero(sample.labels == c)[:2]:
            Image.fromarray(sample.images[row]).save(folder / f"{row}.png")
    Image.fromarray(sample.images[10]).convert("L").save(root / "grey.png")
    Image.fromarray(np.dstack([sample.images[11], np.full((32, 32), 200, np.uint8)])).save(root / "rgba.png")
    (root / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n this file was cut short")
    (root / "notes.txt").write_text("not an image; ignored in folders")
    return root


@pytest.fixture(scope="module")
def eva_checkpoint(tmp_path_factory):
    """A ResNet18 of width 8 in the format ``eva-utils train`` writes."""
    torch.manual_seed(0)
    model = models.resnet18(width=8)
    path = tmp_path_factory.mktemp("run") / "checkpoint.pt"
    config = {"model": "resnet18", "width": 8, "num_classes": 10, "data": "sample"}
    return checkpoint.save_checkpoint(path, model, None, None, None, None, 1, config=config)


# ----------------------------------------------------------------------------- end to end


def test_one_layer_over_several_images(tmp_path, capsys, images, eva_checkpoint):
    out = tmp_path / "out" / "nested"  # created
    assert _run(["--model_path", eva_checkpoint, "--images_path", images, "--save_dir", out]) == 0
    captured = capsys.readouterr()
    assert _pngs(out) == [f"image{i}.png" for i in range(1, 9)]  # every readable image; bad.png (0) skipped
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 1 and "warning: skipped" in warnings[0] and "bad.png" in warnings[0]
    assert "Traceback" not in captured.err
    assert "layer4.1.conv2 (conv 1 of 20 from the back)" in captured.out
    assert "32x32 cifar preprocessing" in captured.out
    summary = captured.out.strip().splitlines()[-1]
    assert re.search(r"done in [\d.]+s: 8 images, 1 skipped \(unreadable\), 8 files written to .*nested$", summary), summary
    assert any(name in captured.out for name in data.CIFAR10_CLASSES)  # CIFAR-10 names by default


def test_several_layers_on_one_image_counted_from_the_back(tmp_path, capsys, images):
    # the GradCam tool's second README command, on torchvision's ResNet18 with random weights
    code = _run([*TV, "--conv2d_backcount", "1", "3", "4", "--images_path", images / "cat" / "300.png",
                 "--imageNet_labels", "--save_dir", tmp_path])
    assert code == 0
    out = capsys.readouterr().out
    # named after the count and the layer (not layer1.png.., which torchvision's own layer1 would clash with)
    assert _pngs(tmp_path) == ["back1_layer4.1.conv2.png", "back3_layer4.0.downsample.0.png", "back4_layer4.0.conv2.png"]
    assert "layer4.1.conv2 (conv 1 of 20 from the back), layer4.1.conv1 (conv 3 of 20 from the back), " \
           "layer4.0.downsample.0 (conv 2 of 20" not in out
    for label in ("layer4.1.conv2 (conv 1 of 20", "layer4.0.downsample.0 (conv 3 of 20", "layer4.0.conv2 (conv 4 of 20"):
        assert label in out
    assert "1 image, 0 skipped (unreadable), 3 files written" in out


def test_several_layers_on_several_images_by_name(tmp_path, capsys, images):
    code = _run([*TV, "--layer", "layer4", "--layer", "layer3.1", "--images-path", images / "dog", "--save-dir", tmp_path])
    assert code == 0
    assert _pngs(tmp_path) == ["image0_layer3.1.png", "image0_layer4.png", "image1_layer3.1.png", "image1_layer4.png"]
    assert "2 images, 0 skipped (unreadable), 4 files written" in capsys.readouterr().out


def test_n_images_picks_reproducibly_with_the_seed(tmp_path, images, eva_checkpoint):
    picks = []
    for run, seed in enumerate([3, 3, 4]):
        out = tmp_path / str(run)
        assert _run(["--model-path", eva_checkpoint, "--images-path", images, "--n-images", 2, "--seed", seed,
                     "--save-dir", out]) == 0
        picks.append(_pngs(out))
    assert len(picks[0]) == 2 and picks[0] == picks[1]
    assert picks[0] != picks[2]


def test_state_dict_with_arch_and_a_labels_file(tmp_path, capsys, images, eva_checkpoint):
    model = checkpoint.load_trained_model(eva_checkpoint)
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    labels = tmp_path / "labels.txt"
    labels.write_text("{" + ",\n ".join(f"{i}: 'my {name}'" for i, name in enumerate(data.CIFAR10_CLASSES)) + "}")
    code = _run(["--model_path", tmp_path / "weights.pth", "--arch", "resnet18", "--num-classes", 10,
                 "--images_path", images / "ship", "--labels_path", labels, "--method", "gradcam++",
                 "--save_dir", tmp_path / "out"])
    assert code == 0
    out = capsys.readouterr().out
    assert "eva_utils resnet18 (width 8, 10 classes)" in out and ": my " in out and "with gradcam++" in out
    assert _pngs(tmp_path / "out") == ["image0.png", "image1.png"]


def test_the_run_leaves_no_hook_and_the_model_as_loaded(monkeypatch, tmp_path, images, eva_checkpoint):
    loaded = []

    def load_and_keep(*args, **kwargs):
        classifier = real_load(*args, **kwargs)
        loaded.append(classifier.model)
        return classifier

    real_load = sources.load_model
    monkeypatch.setattr(sources, "load_model", load_and_keep)
    assert _run(["--model_path", eva_checkpoint, "--images_path", images / "cat", "--conv2d_backcount", 1, 5,
                 "--layer", "layer2", "--method", "eigencam", "--save_dir", tmp_path]) == 0
    (model,) = loaded
    for module in model.modules():
        assert not (module._forward_hooks or module._forward_pre_hooks or module._backward_hooks)
        assert not module.training
    assert all(p.grad is None for p in model.parameters())


def test_the_gpu_when_there_is_one(tmp_path, capsys, images, eva_checkpoint):
    assert _run(["--model_path", eva_checkpoint, "--images_path", images / "cat", "--save_dir", tmp_path]) == 0
    assert f"on {'cuda' if torch.cuda.is_available() else 'cpu'}" in capsys.readouterr().out  # --device auto


def test_python_m_with_show_and_no_display_saves_instead(tmp_path, images, eva_checkpoint):
    env = {**os.environ, "MPLBACKEND": "Agg", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-m", "eva_utils.cam_cli", "--model_path", str(eva_checkpoint), "--conv2d_backcount", "1", "3",
         "4", "--images_path", str(images / "cat" / "301.png"), "--show"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "cannot open windows" in result.stdout and "saving into ./gradcam_out instead" in result.stdout
    assert _pngs(tmp_path / "gradcam_out") == ["back1_layer4.1.conv2.png", "back3_layer4.0.shortcut.0.png",
                                               "back4_layer4.0.conv2.png"]
    assert "Traceback" not in result.stderr


def test_without_save_dir_it_saves_into_gradcam_out_and_says_so(monkeypatch, tmp_path, capsys, images, eva_checkpoint):
    monkeypatch.chdir(tmp_path)
    assert _run(["--model_path", eva_checkpoint, "--images_path", images / "grey.png"]) == 0
    assert "saving the figures into ./gradcam_out" in capsys.readouterr().out
    assert _pngs(tmp_path / "gradcam_out") == ["image0.png"]


def test_show_hands_the_figures_to_pyplot(monkeypatch):
    import matplotlib.pyplot as plt

    from eva_utils.apps import cli_cam as cam_cli

    shown = []
    monkeypatch.setattr(plt, "show", lambda: shown.append(plt.get_fignums()))
    fig = plots.show_cams(np.zeros((1, 8, 8, 3)), [np.zeros((1, 8, 8))])
    try:
        cam_cli._show([fig])
        assert shown == [[1]] or len(shown[0]) == 1
    finally:
        plt.close("all")


# ----------------------------------------------------------------------------- bad input: one line, exit 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model_path", "missing.pt"], "model file missing.pt does not exist"),
        (["--model_path", "vgg61"], "unknown model 'vgg61'; did you mean vgg"),
        (["--model_path", "resnet18", "--weights", "none", "--method", "gradkam"], "did you mean gradcam"),
        ([*TV, "--layer", "layer5"], "unknown layer 'layer5'"),
        ([*TV, "--conv2d_backcount", "21"], "has 20 conv layers, so a count from the back must be between 1 and 20"),
        ([*TV, "--conv2d_backcount", "0"], "counts from the back start at 1"),
        ([*TV, "--conv2d_backcount", "1", "-2"], "counts from the back start at 1"),
        ([*TV, "--n_images", "0"], "--n_images/--n-images: must be a positive integer"),
        ([*TV, "--n-images", "-3"], "must be a positive integer"),
        ([*TV, "--imageNet_labels", "--num-classes", "10"], "holds 1000 class names but the model has 10 outputs"),
        ([*TV, "--input-size", "4"], "at least 8 pixels"),
        (["--model_path", "alexnet", "--weights", "none", "--input-size", "8", "--layer", "features.0"], "cannot run on 8x8"),
    ],
)
def test_bad_arguments(capsys, images, args, message):
    code = _run([*args, "--images_path", images / "cat"])
    assert message in _one_line_error(capsys, code)


def test_bad_model_files(tmp_path, capsys, images, eva_checkpoint):
    text = tmp_path / "model.pt"
    text.write_text("this is not a model")
    assert "is not a readable PyTorch file" in _one_line_error(capsys, _run(["--model_path", text, "--images_path", images]))
    locked = tmp_path / "locked.pt"
    locked.write_bytes(eva_checkpoint.read_bytes())
    locked.chmod(0)
    if not os.access(locked, os.R_OK):  # root can read anything
        assert "cannot be read" in _one_line_error(capsys, _run(["--model_path", locked, "--images_path", images]))
    model = checkpoint.load_trained_model(eva_checkpoint)
    torch.save(model.state_dict(), tmp_path / "weights.pth")
    code = _run(["--model_path", tmp_path / "weights.pth", "--images_path", images])
    err = _one_line_error(capsys, code)
    assert "arch=NAME" in err and "(on the command line: --arch)" in err
    code = _run(["--model_path", tmp_path / "weights.pth", "--arch", "resnet34", "--images_path", images])
    err = _one_line_error(capsys, code)
    assert "do not fit arch=resnet34" in err and "(on the command line: --arch)" in err
    code = _run(["--model_path", tmp_path / "weights.pth", "--arch", "resnet19", "--images_path", images])
    assert "did you mean resnet18" in _one_line_error(capsys, code)


def test_pickled_model_refused_without_unsafe_pickle(tmp_path, capsys, images, eva_checkpoint):
    torch.save(checkpoint.load_trained_model(eva_checkpoint), tmp_path / "whole.pt")
    args = ["--model_path", tmp_path / "whole.pt", "--images_path", images / "ship", "--save_dir", tmp_path / "out"]
    err = _one_line_error(capsys, _run(args))
    assert "runs code stored in the file" in err and "unsafe_pickle=True" in err
    assert "(on the command line: --unsafe-pickle" in err
    assert not (tmp_path / "out").exists()
    assert _run([*args, "--unsafe-pickle"]) == 0
    assert _pngs(tmp_path / "out") == ["image0.png", "image1.png"]


def test_download_failure_suggests_random_weights(monkeypatch, tmp_path, capsys, images):
    def no_internet(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", no_internet)
    err = _one_line_error(capsys, _run(["--model_path", "resnet18", "--images_path", images]))
    assert "could not download the pretrained weights of resnet18" in err and 'weights="none"' in err
    assert "(on the command line: --weights)" in err


def test_labels_file_with_code_never_runs(tmp_path, capsys, images, eva_checkpoint):
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("still here")
    labels = tmp_path / "labels.txt"
    labels.write_text(f"__import__('os').remove({str(sentinel)!r})")
    code = _run(["--model_path", eva_checkpoint, "--images_path", images, "--labels_path", labels])
    assert "contains Python code (it calls __import__('os').remove)" in _one_line_error(capsys, code)
    assert sentinel.read_text() == "still here"


def test_labels_that_do_not_match_the_outputs(tmp_path, capsys, images, eva_checkpoint):
    labels = tmp_path / "labels.txt"
    labels.write_text("cat\ndog\nperson\n")
    code = _run(["--model_path", eva_checkpoint, "--images_path", images, "--labels_path", labels])
    assert "holds 3 class names but the model has 10 outputs" in _one_line_error(capsys, code)
    code = _run(["--model_path", eva_checkpoint, "--images_path", images, "--labels_path", labels, "--imagenet-labels"])
    assert "not both" in _one_line_error(capsys, code)


def test_bad_images(tmp_path, capsys, eva_checkpoint):
    (tmp_path / "empty").mkdir()
    code = _run(["--model_path", eva_checkpoint, "--images_path", tmp_path / "empty"])
    assert "no images in" in _one_line_error(capsys, code)
    (tmp_path / "notes.txt").write_text("hello")
    code = _run(["--model_path", eva_checkpoint, "--images_path", tmp_path / "notes.txt"])
    assert "notes.txt is not an image PIL can read" in _one_line_error(capsys, code)
    code = _run(["--model_path", eva_checkpoint, "--images_path", tmp_path / "nowhere"])
    assert "does not exist" in _one_line_error(capsys, code)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "a.png").write_bytes(b"garbage")
    code = _run(["--model_path", eva_checkpoint, "--images_path", tmp_path / "broken", "--save_dir", tmp_path / "o"])
    err = capsys.readouterr().err
    assert code == 2 and "warning: skipped" in err and "none of the 1 image files could be read" in err


# ----------------------------------------------------------------------------- conv layers in forward order (eva_utils.cam)


def test_conv_layers_finds_every_conv_inside_resnet_blocks():
    model = torchvision.models.resnet18()
    model.train()
    convs = cam.conv_layers(model, 64)
    assert len(convs) == 20 == sum(isinstance(m, nn.Conv2d) for m in model.modules())  # incl. 3 downsample convs
    names = list(convs)
    assert names[0] == "conv1" and names[-1] == "layer4.1.conv2"
    assert names.index("layer2.0.downsample.0") == names.index("layer2.0.conv2") + 1  # forward order
    assert all(convs[n] is model.get_submodule(n) for n in names)
    assert list(cam.count_from_back(convs, [1])) == ["layer4.1.conv2"]
    assert list(cam.count_from_back(convs, [len(convs)])) == ["conv1"]  # the GradCam tool was off by one here
    assert model.training and all(m.training for m in model.modules())  # left as found
    assert not any(m._forward_hooks for m in model.modules())


def test_conv_layers_follow_the_forward_pass_not_the_registration_order():
    class Backwards(nn.Module):
        def __init__(self):
            super().__init__()
            self.late = nn.Conv2d(4, 4, 3, padding=1)
            self.unused = nn.Conv2d(3, 4, 1)
            self.early = nn.Conv2d(3, 4, 3, padding=1)
            self.head = nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.late(self.early(x)).mean((2, 3)))

    assert list(cam.conv_layers(Backwards(), 16)) == ["early", "late"]


def test_count_from_back_errors_say_how_many_conv_layers_there_are():
    convs = cam.conv_layers(models.resnet18(width=4), 32)
    with pytest.raises(UserError, match="has 20 conv layers, so a count from the back must be between 1 and 20"):
        cam.count_from_back(convs, [21])
    for bad in (0, -1):
        with pytest.raises(UserError, match="starting at 1"):
            cam.count_from_back(convs, [bad])
    with pytest.raises(UserError, match="no nn.Conv2d"):
        cam.conv_layers(nn.Sequential(nn.Flatten(), nn.Linear(12, 2)), 2)
    with pytest.raises(UserError, match="could not run"):
        cam.conv_layers(nn.Sequential(nn.Conv2d(3, 4, 5), nn.Flatten(), nn.Linear(4 * 12 * 12, 2)), 32)  # made for 16x16


def test_class_probs_is_the_softmax_of_the_logits():
    model = models.resnet18(width=4).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(x).softmax(-1).numpy()
    np.testing.assert_allclose(cam.class_probs(model, x, batch_size=2), expected, rtol=1e-5, atol=1e-6)


def test_shipped_model_by_its_source_name(tmp_path, capsys, images):
    code = _run(["--model_path", "pretrained:resnet18_w16_cifar10", "--images_path", images / "ship", "--layer", "layer4",
                 "--save_dir", tmp_path])
    assert code == 0
    out = capsys.readouterr().out
    assert "resnet18_w16_cifar10, shipped with the package" in out
    assert _pngs(tmp_path) == ["image0.png", "image1.png"]


def test_earlier_figures_are_not_overwritten_without_overwrite(tmp_path, capsys, images, eva_checkpoint):
    args = ["--model_path", eva_checkpoint, "--images_path", images / "cat", "--save_dir", tmp_path]
    assert _run(args) == 0
    before = {p.name: p.read_bytes() for p in tmp_path.glob("*.png")}
    capsys.readouterr()
    err = _one_line_error(capsys, _run([*args, "--method", "layercam"]))
    assert "already holds figures" in err and "--overwrite" in err
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.png")} == before
    assert _run([*args, "--method", "layercam", "--overwrite"]) == 0
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.png")} != before


def test_overwrite_replaces_cams_own_figures_never_a_file_of_the_users(tmp_path, capsys, images, eva_checkpoint):
    # --overwrite used to replace any PNG whose name a figure took: a photo of the user's called image0.png
    args = ["--model_path", eva_checkpoint, "--images_path", images / "cat", "--save_dir", tmp_path / "figs"]
    assert _run(args) == 0
    ours = sorted(p.name for p in (tmp_path / "figs").glob("*.png"))
    assert _run([*args, "--method", "layercam", "--overwrite"]) == 0  # its own, unchanged: replaced
    capsys.readouterr()
    photo = tmp_path / "figs" / ours[0]
    photo.write_bytes(b"the user's own picture")
    err = _one_line_error(capsys, _run([*args, "--overwrite"]))
    assert f"{ours[0]} was not written by eva-utils cam, or was changed since" in err and "--save_dir" in err
    assert photo.read_bytes() == b"the user's own picture"


class DictOutputs(nn.Module):
    """A model that returns a dict of logits, as some detection and multi-head models do."""

    def __init__(self):
        super().__init__()
        self.net = models.resnet18(width=4)

    def forward(self, x):
        logits = self.net(x)
        return {"aux": logits.flip(1), "logits": logits}


def test_an_output_chosen_by_name(tmp_path, capsys, images):
    torch.save(DictOutputs().eval(), tmp_path / "dict.pt")
    args = ["--model_path", tmp_path / "dict.pt", "--unsafe-pickle", "--input-size", "32", "--preset", "cifar",
            "--images_path", images / "ship", "--layer", "net.layer4"]
    assert _run([*args, "--output-index", "logits", "--save_dir", tmp_path / "a"]) == 0
    assert _pngs(tmp_path / "a") == ["image0.png", "image1.png"]
    capsys.readouterr()
    err = _one_line_error(capsys, _run([*args, "--output-index", "nope", "--save_dir", tmp_path / "b"]))
    assert "output_index='nope' does not exist" in err and "'aux', 'logits'" in err


def test_running_out_of_gpu_memory_says_what_to_lower(monkeypatch, tmp_path, capsys, images, eva_checkpoint):
    # the CUDA allocator's error, raised where a GPU would run out: inside the CAM computation
    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(cam, "layer_cams", out_of_memory)
    code = _run(["--model_path", eva_checkpoint, "--images_path", images / "ship", "--save_dir", tmp_path / "o"])
    err = _one_line_error(capsys, code)
    assert "out of memory while computing the CAMs: lower --batch-size" in err
    assert not list((tmp_path / "o").glob("*.png"))  # nothing half-written


def test_one_size_rule_for_cam_and_the_app(tmp_path, capsys, images, eva_checkpoint):
    from eva_utils.data.images import MIN_SIDE

    Image.new("RGB", (1, 1), (9, 9, 9)).save(tmp_path / "dot.png")
    assert _run(["--model_path", eva_checkpoint, "--images_path", tmp_path / "dot.png", "--save_dir", tmp_path / "o"]) == 2
    err = capsys.readouterr().err
    said = f"dot.png is 1x1 pixels: at least {MIN_SIDE}x{MIN_SIDE} is needed to say anything about it"
    assert said in err and "Traceback" not in err  # skipped with the reason, then: none could be read
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").glob("*.png"))
    from eva_utils.apps.app import Explorer

    with pytest.raises(UserError, match=re.escape(said)):
        Explorer.from_source().explain(str(tmp_path / "dot.png"))
