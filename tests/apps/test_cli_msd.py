"""End to end tests of ``eva-utils msd`` with the 3-block MSDNet-GCN fixture and the bundled sample."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from eva_utils import data, plots
from eva_utils.apps.cli import main
from eva_utils.explain import cam
from eva_utils.models.msdnet import load_msdnet_gcn_checkpoint, msdnet

FIXTURE = Path(__file__).parents[1] / "fixtures" / "msdnet_cifar10_3blocks_random.pth.tar"


def run(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(["msd", *args])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def test_set() -> data.ArrayDataset:
    return data.load_sample(train=False, transform=None)


def test_tables_for_the_whole_sample(tmp_path, capsys) -> None:
    code, out, err = run(capsys, "--checkpoint", str(FIXTURE), "--limit", "3", "--per-class", "--budget",
                         "--out", str(tmp_path))
    assert code == 0, err
    assert "accuracy of each exit (sample test set, 1000 images)" in out
    assert re.search(r"^mean +\d+\.\d\d%$", out, re.M)
    rows = [line.split() for line in out.splitlines() if re.match(r"^ +\d+  [a-z]", line)]
    assert [r[0] for r in rows] == ["0", "1", "2"] and all(len(r) == 2 + 3 + 1 for r in rows)
    assert "... 997 more images not shown" in out
    counts = re.findall(r"^ +(\d) +(\d+)  \(", out, re.M)
    assert [k for k, _ in counts] == ["0", "1", "2", "3"] and sum(int(c) for _, c in counts) == 1000
    assert "accuracy per class and exit" in out and "truck" in out
    assert "each exit alone" in out and (tmp_path / "budget_curve.png").exists()


def test_one_class_with_equals_syntax_and_a_grid(tmp_path, capsys, test_set) -> None:
    code, out, err = run(capsys, "--checkpoint", str(FIXTURE), "--cl=dog", "--limit", "0", "--grid", "3",
                         "--exit", "3,1", "--out", str(tmp_path))
    assert code == 0, err
    assert "class dog: 100 images" in out
    rows = [line.split() for line in out.splitlines() if re.match(r"^ +\d+  [a-z]", line)]
    assert len(rows) == 100 and {r[1] for r in rows} == {"dog"}
    assert [int(r[0]) for r in rows] == np.flatnonzero(test_set.labels == 5).tolist()  # test-set indices
    for k in (1, 2, 3):  # the accuracy table agrees with the ticks in its column
        ticks = sum(r[1 + k] in ("✓", "1") for r in rows)
        assert re.search(rf"^ +{k} +{100 * ticks / len(rows):.2f}%", out, re.M)
    assert (tmp_path / "grid.png").exists()


def test_heatmap_of_an_odd_image_is_that_test_image_in_rgb(tmp_path, capsys, test_set) -> None:
    n, k = 101, 2
    code, out, err = run(capsys, "--checkpoint", str(FIXTURE), "--img-no", str(n), "--exit", str(k),
                         "--out", str(tmp_path / "new" / "dir"))
    assert code == 0, err
    folder = tmp_path / "new" / "dir"
    written = np.asarray(Image.open(folder / f"img{n}_input.png").convert("RGB"))
    raw = data.load_sample(train=False)
    np.testing.assert_array_equal(written, raw.images[n])  # the sample's test image n, not a batch index
    assert f"image {n}: true class {raw.classes[raw.labels[n]]}" in out
    # the heatmap is plots.overlay (RGB, jet: red = high) of exit k's Grad-CAM, pixels repeated 8x
    model = load_msdnet_gcn_checkpoint(FIXTURE)
    image = test_set[n][0]
    maps = cam.layer_cams(model, image[None], [model.exit_feature_modules()[k - 1]], output_index=k - 1)
    heat = next(iter(maps.values()))[0]
    expected = plots.overlay(image.permute(1, 2, 0).numpy(), heat)
    heatmap = np.asarray(Image.open(folder / f"img{n}_exit{k}_gradcam.png").convert("RGB"))
    assert heatmap.shape == (256, 256, 3)
    np.testing.assert_allclose(heatmap[::8, ::8] / 255.0, expected, atol=1 / 255 + 1e-6)
    hot = np.unravel_index(heat.argmax(), heat.shape)
    cold = np.unravel_index(heat.argmin(), heat.shape)
    r_hot, _, b_hot = heatmap[hot[0] * 8, hot[1] * 8].astype(int)
    r_cold, _, b_cold = heatmap[cold[0] * 8, cold[1] * 8].astype(int)
    assert r_hot - b_hot > r_cold - b_cold  # red where Grad-CAM is high, blue where low
    assert list(folder.glob("*.png")) and not (folder / f"img{n}_exit1_gradcam.png").exists()


def test_the_png_writer_lets_pillow_read_the_array_as_rgb(tmp_path, monkeypatch) -> None:
    """fromarray's ``mode=`` is deprecated (Pillow 11.3, Colab's): the writer hands Pillow uint8 (H, W, 3) and no mode."""
    from eva_utils.apps import cli_msd

    real = Image.fromarray

    def fromarray(obj, mode=None):
        assert mode is None, "Image.fromarray(..., mode=...) is deprecated since Pillow 11.3"
        return real(obj)

    monkeypatch.setattr(Image, "fromarray", fromarray)
    rgb = np.random.default_rng(0).random((4, 5, 3))
    path = cli_msd._save_rgb(rgb, tmp_path / "x.png", scale=2)
    with Image.open(path) as image:
        assert image.mode == "RGB" and image.size == (10, 8)
        written = np.asarray(image)
    np.testing.assert_array_equal(written[::2, ::2], np.round(rgb * 255).astype(np.uint8))
    np.testing.assert_array_equal(written[1::2, 1::2], written[::2, ::2])  # each pixel repeated scale times


def test_a_checkpoint_of_eva_utils_train_gets_normalised_inputs(tmp_path, capsys) -> None:
    from eva_utils.training.checkpoint import save_checkpoint
    from eva_utils.training.history import History

    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "checkpoint.pt", msdnet(), None, None, None, History(), 1,
                           config={"model": "msdnet", "num_classes": 10})
    code, out, err = run(capsys, "--checkpoint", str(path), "--img-no", "7", "--exit", "10,1", "--out", str(tmp_path))
    assert code == 0, err
    written = np.asarray(Image.open(tmp_path / "img7_input.png").convert("RGB"))
    np.testing.assert_array_equal(written, data.load_sample(train=False).images[7])  # denormalised back exactly
    assert "right at" in out and (tmp_path / "img7_exit10_gradcam.png").exists()


def _gcn_checkpoint(path: Path, model: torch.nn.Module, **extra: object) -> Path:
    """Save ``model`` the way MSDNet-GCN does (DataParallel prefix, epoch/model/best_prec1)."""
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"epoch": 1, "model": "msdnet", "state_dict": state, "best_prec1": 0.0, **extra}, path)
    return path


class Payload:
    """Stands in for any pickled Python object."""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "pass --checkpoint PATH"),
        (["--checkpoint", "missing.pth.tar"], "does not exist"),
        (["--checkpoint", "{ckpt}", "--img-no", "3", "--exit", "4"], "--exit 4 does not exist: this model has 3 exits"),
        (["--checkpoint", "{ckpt}", "--grid", "2", "--exit", "0"], "--exit 0 does not exist"),
        (["--checkpoint", "{ckpt}", "--exit", "2"], "add one of them"),
        (["--checkpoint", "{ckpt}", "--img-no", "1000"], "past the end of the sample test set: it has 1000 images"),
        (["--checkpoint", "{ckpt}", "--img-no", "-1"], "must be 0 or more"),
        (["--checkpoint", "{ckpt}", "--img-no", "3", "--cl", "dog"], "leave out --cl"),
        (["--checkpoint", "{ckpt}", "--cl", "doge"], "unknown class 'doge'; did you mean dog?"),
        (["--checkpoint", "{ckpt}", "--exit", "two", "--grid", "1"], "expected exit numbers"),
        (["--checkpoint", "{ckpt}", "--grid", "300"], r"--grid 300 is too many images for one figure \(at most 24\)"),
        (["--checkpoint", "{ckpt}", "--data", "imagenet"], "unknown dataset 'imagenet'"),
        (["--checkpoint", "{ckpt}", "--data", "cifar10", "--no-download", "--data-dir", "{tmp}"], "CIFAR-10 not found"),
        pytest.param(["--checkpoint", "{ckpt}", "--device", "cuda"], "no GPU is available",
                     marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")),
        (["--checkpoint", "{widths}"], "does not fit this MSDNet configuration: .*of another shape"),
        (["--checkpoint", "{classes}"], "the checkpoint has 100 classes but the sample data has 10"),
        (["--checkpoint", "{unsafe}"], "pickled Python object .*so it was refused.*weights_only=False"),
        (["--checkpoint", "{truncated}"], "truncated or corrupt"),
        (["--checkpoint", "{resnet}"], "holds a ResNet, not an MSD-Net"),
        (["--checkpoint", "{tmp}/anytime_cifar_10.pth.tar"], "does not exist: check the path, or add --download-checkpoint"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, args, message) -> None:
    paths = {"ckpt": str(FIXTURE), "tmp": str(tmp_path)}
    if "{widths}" in args:  # same depth, other growth: the loader says which tensors differ
        paths["widths"] = str(_gcn_checkpoint(tmp_path / "widths.pth.tar", msdnet(blocks=3, growth=4)))
    if "{classes}" in args:
        paths["classes"] = str(_gcn_checkpoint(tmp_path / "c100.pth.tar", msdnet(blocks=2, num_classes=100)))
    if "{unsafe}" in args:
        paths["unsafe"] = str(_gcn_checkpoint(tmp_path / "unsafe.pth.tar", msdnet(blocks=2), extra=Payload()))
    if "{truncated}" in args:
        (tmp_path / "truncated.pth.tar").write_bytes(FIXTURE.read_bytes()[:5000])
        paths["truncated"] = str(tmp_path / "truncated.pth.tar")
    if "{resnet}" in args:
        from eva_utils.models import resnet18
        from eva_utils.training.checkpoint import save_checkpoint

        paths["resnet"] = str(save_checkpoint(tmp_path / "r18.pt", resnet18(width=8), None, None, None, None, 1,
                                              config={"model": "resnet18", "width": 8, "num_classes": 10}))
    code, out, err = run(capsys, *[a.format(**paths) for a in args])
    assert code == 2
    assert re.search(message, err), err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_console_script_one_line_for_a_wrong_exit(tmp_path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "eva_utils", "msd", "--checkpoint", str(FIXTURE), "--img-no", "5", "--exit", "9"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "eva-utils msd: error: --exit 9 does not exist: this model has 3 exits, numbered 1..3"
    ]
    assert not (tmp_path / "msd_out").exists()


def test_download_checkpoint_fetches_the_published_model_once(tmp_path, capsys, monkeypatch) -> None:
    import sys

    # stands in for Dropbox
    monkeypatch.setattr(sys.modules["eva_utils.models.msdnet_gcn"], "MSDNET_GCN_CIFAR10_URL", FIXTURE.resolve().as_uri())
    target = tmp_path / "anytime_cifar_10.pth.tar"
    code, out, err = run(capsys, "--checkpoint", str(target), "--download-checkpoint", "--limit", "2")
    assert code == 0, err
    assert target.read_bytes() == FIXTURE.read_bytes() and "downloading" in err
    assert "mean" in out  # the per-exit table of the downloaded model
    code, _, err = run(capsys, "--checkpoint", str(target), "--download-checkpoint", "--limit", "2")
    assert code == 0 and "downloading" not in err


def test_images_already_in_out_are_kept_without_overwrite(tmp_path, capsys) -> None:
    (tmp_path / "grid.png").write_bytes(b"mine")
    code, out, err = run(capsys, "--checkpoint", str(FIXTURE), "--grid", "2", "--out", str(tmp_path))
    assert code == 2 and "already holds images (grid.png)" in err and "--overwrite" in err
    assert (tmp_path / "grid.png").read_bytes() == b"mine"
    code, out, err = run(capsys, "--checkpoint", str(FIXTURE), "--grid", "2", "--out", str(tmp_path), "--overwrite")
    assert code == 0 and (tmp_path / "grid.png").read_bytes() != b"mine"
