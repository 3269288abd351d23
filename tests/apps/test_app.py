"""Tests for eva_utils.app: the explorer's functions directly, then the page in a real browser.

The browser test starts ``eva-utils app`` on a free local port and drives Debian's Chromium with
Playwright (``apt-get install -y chromium``; Playwright's own browser download is not used).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eva_utils import data
from eva_utils.apps.app import PREDICTED, SPACE_LEDGER, Explorer, write_space
from eva_utils.apps.cli import main
from eva_utils.core.errors import UserError
from eva_utils.data import presets as transforms
from eva_utils.explain import cam

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT = os.environ.get("EVA_UTILS_APP_SCREENSHOT")  # set to images/app.png to refresh the README's


@pytest.fixture(scope="module")
def explorer():
    return Explorer.from_source()


@pytest.fixture(scope="module")
def cat_png(tmp_path_factory):
    sample = data.load_sample(train=False)
    path = tmp_path_factory.mktemp("images") / "cat.png"
    Image.fromarray(sample.images[np.flatnonzero(sample.labels == 3)[0]]).save(path)
    return path


# ----------------------------------------------------------------------------- the functions


def test_top5_and_one_map_per_stage(explorer, cat_png):
    result = explorer.explain(str(cat_png))
    x = transforms.test_transforms()(image=np.asarray(Image.open(cat_png)))["image"][None]
    probs = cam.class_probs(explorer.classifier.model, x)[0]
    assert list(result.top5) == [data.CIFAR10_CLASSES[i] for i in np.argsort(-probs)[:5]]
    assert list(result.top5.values()) == pytest.approx(sorted(probs, reverse=True)[:5], abs=1e-6)
    captions = [caption for _, caption in result.panels]
    assert captions == ["image", "layer0: 32x32 map", "layer1: 32x32 map", "layer2: 16x16 map", "layer3: 8x8 map",
                        "layer4: 4x4 map"]
    assert all(panel.dtype == np.uint8 and panel.shape == (160, 160, 3) for panel, _ in result.panels)


def test_the_maps_shown_are_layer_cams(explorer, cat_png):
    result = explorer.explain(str(cat_png), method="layercam", target="dog", alpha=1.0)
    x = explorer.image_tensor(str(cat_png))
    maps = cam.layer_cams(explorer.classifier.model, x, cam.resnet_layers(explorer.classifier.model),
                          targets=[data.CIFAR10_CLASSES.index("dog")], method="layercam")
    from eva_utils.plots import overlay

    expected = overlay(np.zeros((32, 32, 3)), maps["layer3"][0], alpha=1.0)  # alpha 1: the colour map alone
    shown = result.panels[4][0][::5, ::5].astype(float) / 255  # back to 32x32
    np.testing.assert_allclose(shown, expected, atol=1 / 255 + 1e-6)
    assert "**dog**" in result.note


def test_grayscale_rgba_webp_and_large_photos_are_explained(explorer, tmp_path):
    rng = np.random.default_rng(0)
    files = {
        "grey.png": Image.fromarray(rng.integers(0, 255, (50, 70), dtype=np.uint8)),
        "rgba.png": Image.fromarray(rng.integers(0, 255, (40, 40, 4), dtype=np.uint8)),
        "photo.webp": Image.fromarray(rng.integers(0, 255, (600, 800, 3), dtype=np.uint8)),
        "photo.jpg": Image.fromarray(rng.integers(0, 255, (300, 200, 3), dtype=np.uint8)),
    }
    for name, image in files.items():
        image.save(tmp_path / name)
        assert len(explorer.explain(str(tmp_path / name)).panels) == 6, name


@pytest.mark.parametrize("case, message", [
    ("text", "is not an image"),
    ("tiny", "1x1 pixels: at least 8x8"),
    ("huge", "10000x10000 pixels, more than 40 megapixels: resize it first"),
    ("none", "no image: upload one"),
])
def test_bad_images_are_refused_with_a_readable_message(explorer, tmp_path, case, message):
    path = tmp_path / f"{case}.png"
    if case == "text":
        path.write_text("just some notes, renamed .png")
    elif case == "tiny":
        Image.new("RGB", (1, 1)).save(path)
    elif case == "huge":
        Image.new("1", (10_000, 10_000)).save(path)  # 100 megapixels; checked from the header, never decoded
    with pytest.raises(UserError, match=message):
        explorer.explain(None if case == "none" else str(path))


def test_an_unknown_class_name_or_method(explorer, cat_png):
    with pytest.raises(UserError, match="unknown class 'kat'; did you mean cat"):
        explorer.explain(str(cat_png), target="kat")
    with pytest.raises(UserError, match="one-pass methods"):
        explorer.explain(str(cat_png), method="scorecam")
    for alpha in (2, "abc", None, float("nan")):  # through the API an opacity may be any JSON value
        with pytest.raises(UserError, match="opacity must be a number between 0 and 1, got"):
            explorer.explain(str(cat_png), alpha=alpha)
    assert explorer.explain(str(cat_png), target=PREDICTED).top5


def test_the_mistakes_are_the_most_confident_ones(explorer):
    rows = explorer.mistakes(k=10)
    assert len(rows) == 10
    assert [r[3] for r in rows] == sorted((r[3] for r in rows), reverse=True)
    sample = data.load_sample(train=False)
    for index, true, predicted, _ in rows:
        assert true == sample.classes[sample.labels[index]] != predicted


def test_an_msdnet_checkpoint_shows_its_exits():
    fixture = Path(__file__).parents[1] / "fixtures" / "msdnet_cifar10_3blocks_random.pth.tar"
    explorer = Explorer.from_source(str(fixture))
    assert list(explorer.layers) == ["exit 1", "exit 2", "exit 3"]
    image = data.load_sample(train=False).images[0]
    captions = [c for _, c in explorer.explain(image).panels]
    assert captions[0] == "image" and [c.split(":")[0] for c in captions[1:]] == ["exit 1", "exit 2", "exit 3"]


def test_a_model_without_stages_gets_a_layer_picker():
    explorer = Explorer.from_source("mobilenet_v3_small", weights="none")  # torchvision, random weights
    assert explorer.picks_a_layer and len(explorer.layers) > 10
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    last = list(explorer.layers)[-1]
    default = explorer.explain(image)
    assert [c.split(":")[0] for _, c in default.panels] == ["image", last]  # the last conv layer by default
    first = list(explorer.layers)[0]
    assert explorer.explain(image, layer=first).panels[1][1].startswith(first)
    assert len(explorer.classes) == 1000


def test_the_package_and_its_cli_never_import_gradio():
    code = "import sys, eva_utils, eva_utils.cli, eva_utils.app; assert 'gradio' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0


def test_without_gradio_the_command_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # import gradio now raises ImportError
    assert main(["app"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "eva-utils[app]"' in err and len(err.strip().splitlines()) == 1


def test_a_port_in_use_is_one_line(capsys):
    pytest.importorskip("gradio")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        code = main(["app", "--port", str(busy.getsockname()[1])])
    err = capsys.readouterr().err
    assert code == 2 and "choose another --port" in err and len(err.strip().splitlines()) == 1


def test_the_space_folder(tmp_path):
    pytest.importorskip("gradio")
    files = write_space(tmp_path / "space", repo_url="https://github.com/you/eva_utils")
    assert [p.name for p in files] == ["README.md", "app.py", "requirements.txt"]
    readme = (tmp_path / "space" / "README.md").read_text()
    assert readme.startswith("---\n") and "sdk: gradio" in readme and "app_file: app.py" in readme
    assert "eva-utils[app] @ git+https://github.com/you/eva_utils" in (tmp_path / "space" / "requirements.txt").read_text()
    with pytest.raises(UserError, match="already holds a Space's files .*: pass overwrite=True to replace them"):
        write_space(tmp_path / "space")
    ckpt = Path(__file__).parents[1] / "fixtures" / "msdnet_cifar10_3blocks_random.pth.tar"
    with_weights = write_space(tmp_path / "space2", source=str(ckpt))
    assert ckpt.name in [p.name for p in with_weights]
    assert repr(ckpt.name) in (tmp_path / "space2" / "app.py").read_text()


# ----------------------------------------------------------------------------- in a real browser


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(command: list[str], cwd: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1"}
    server = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2)
            return server
        except (urllib.error.URLError, ConnectionError, OSError):
            if server.poll() is not None:
                raise AssertionError(f"the app exited:\n{server.stdout.read()}") from None
            time.sleep(1)
    server.kill()
    raise AssertionError("the app did not answer within 120 s")


def _browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (and pip install playwright) to run it")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright to run the browser test")
    return sync_api


def _explain_in_page(page, url: str, image: Path) -> None:
    page.goto(url)
    page.locator("#upload input[type=file]").set_input_files(str(image))
    page.locator("#image img").wait_for(timeout=60_000)  # the upload was read and shown
    page.locator("#explain").click()


def test_in_a_real_browser(tmp_path, cat_png):
    sync_api = _browser()
    pytest.importorskip("gradio")
    port = _free_port()
    server = _serve([sys.executable, "-m", "eva_utils", "app", "--port", str(port)], tmp_path, port)
    url = f"http://127.0.0.1:{port}/"
    explorer = Explorer.from_source()
    expected = explorer.classes[int(explorer.probabilities(explorer.image_tensor(str(cat_png))).argmax())]
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("this is a text file renamed .png")
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu",
                                        "--disable-background-networking", "--disable-component-update"])
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            _explain_in_page(page, url, cat_png)
            top = page.locator("#top5 h2, #top5 .output-class").first
            top.wait_for(timeout=60_000)
            assert top.inner_text().strip() == expected  # the page's top-1 is the model's own prediction
            page.locator("#maps img").nth(5).wait_for(timeout=60_000)
            assert page.locator("#maps img").count() >= 6  # the image and layer0..layer4
            page.screenshot(path=str(tmp_path / "app.png"), full_page=True)
            if SCREENSHOT:
                shutil.copyfile(tmp_path / "app.png", SCREENSHOT)
            # a text file renamed .png: a readable message in the page, and the app keeps serving
            page.goto(url)
            page.locator("#upload input[type=file]").set_input_files(str(not_an_image))
            page.get_by_text("is not an image").first.wait_for(timeout=60_000)
            # two users at once: both are served (queued, one after the other)
            other = browser.new_page()
            for each in (page, other):
                each.goto(url)
                each.locator("#upload input[type=file]").set_input_files(str(cat_png))
                each.locator("#image img").wait_for(timeout=60_000)
            page.locator("#explain").click()
            other.locator("#explain").click()
            for each in (page, other):
                assert each.locator("#top5 h2, #top5 .output-class").first.inner_text(timeout=60_000).strip() == expected
            # the Mistakes tab: a click explains that image in the first tab
            page.get_by_role("tab", name="Mistakes").click()
            first, _, predicted, _ = explorer.mistakes(k=1)[0]
            page.locator("#mistakes").get_by_text(str(first), exact=True).locator("visible=true").first.click()  # row 1
            page.get_by_role("tab", name="Explain an image").wait_for(timeout=30_000)
            page.wait_for_function(f"document.querySelector('#top5') && "
                                   f"document.querySelector('#top5').innerText.includes('{predicted}')", timeout=60_000)
            browser.close()
        # nothing outside what the app was given is served
        for path in ("/gradio_api/file=/etc/passwd", "/file=/etc/passwd", "/gradio_api/file=../../etc/passwd"):
            try:
                answer = urllib.request.urlopen(url.rstrip("/") + path, timeout=10).read()
            except urllib.error.HTTPError:
                continue
            assert b"root:" not in answer, path
    finally:
        server.kill()
        server.wait()
    assert (tmp_path / "app.png").stat().st_size > 20_000


def test_the_space_runs_with_python_app_py(tmp_path, cat_png):
    pytest.importorskip("gradio")
    write_space(tmp_path / "space")
    port = _free_port()
    server = _serve([sys.executable, "app.py"], tmp_path / "space", port)
    try:
        assert "Grad-CAM explorer" in urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).read().decode()
        if Path(CHROMIUM).exists():  # and in the browser: an image explained
            sync_api = pytest.importorskip("playwright.sync_api")
            with sync_api.sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
                page = browser.new_page()
                _explain_in_page(page, f"http://127.0.0.1:{port}/", cat_png)
                page.locator("#top5 h2, #top5 .output-class").first.wait_for(timeout=60_000)
                browser.close()
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("size", [(100_000, 8), (17_000, 1_000)])
def test_a_very_wide_image_is_shown_shrunk_and_explained(explorer, tmp_path, size):
    from eva_utils.apps.app import DISPLAY_SIDE, _handlers

    path = tmp_path / "strip.png"
    Image.new("RGB", size, (200, 30, 30)).save(path)
    gr = pytest.importorskip("gradio")
    shown, kept = _handlers(gr, explorer, []).uploaded(str(path))
    assert max(shown.shape[:2]) == DISPLAY_SIDE and shown.dtype == np.uint8  # WebP, Gradio's format, stops at 16,383
    assert kept.shape[:2] == size[::-1]  # the model sees the whole image
    assert explorer.explain(kept).top5


def test_overwrite_replaces_only_the_spaces_own_unchanged_files(tmp_path, capsys):
    pytest.importorskip("gradio")
    space = tmp_path / "space"
    assert main(["app", "--space", str(space)]) == 0
    assert main(["app", "--space", str(space), "--overwrite"]) == 0  # its own files, unchanged: replaced
    capsys.readouterr()
    (space / "README.md").write_text("# my Space, my words\n")  # the user's edit
    assert main(["app", "--space", str(space), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "README.md was not written by eva-utils app --space, or was changed since" in err and "--space" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert (space / "README.md").read_text() == "# my Space, my words\n"  # kept
    own = tmp_path / "mine"
    own.mkdir()
    (own / "app.py").write_text("print('my own app')\n")  # a folder eva-utils never wrote into
    assert main(["app", "--space", str(own), "--overwrite"]) == 2
    assert "app.py was not written by eva-utils app --space" in capsys.readouterr().err
    assert (own / "app.py").read_text() == "print('my own app')\n" and sorted(p.name for p in own.iterdir()) == ["app.py"]
    assert main(["app", "--space", str(own)]) == 2  # without --overwrite: not told that --overwrite would do
    err = capsys.readouterr().err
    assert "app.py was not written by eva-utils app --space" in err and "move app.py away" in err and "--overwrite" not in err


def test_a_space_goes_beside_the_users_other_files_and_keeps_them(tmp_path):
    pytest.importorskip("gradio")
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine\n")
    written = write_space(folder)  # the user's file is neither replaced nor a reason to ask for overwrite
    assert [p.name for p in written] == ["README.md", "app.py", "requirements.txt"]
    assert (folder / "notes.txt").read_text() == "mine\n"
    write_space(folder, overwrite=True)
    assert (folder / "notes.txt").read_text() == "mine\n"


def test_a_full_disk_leaves_no_half_written_space_and_the_rerun_needs_no_overwrite(tmp_path, small_disk, fill_disk, capsys):
    # the Space used to be written file by file into its folder: a full disk left the model and app.py there, and
    # the rerun after freeing space was refused for want of --overwrite
    pytest.importorskip("gradio")
    model = tmp_path / "model.pt"
    model.write_bytes(os.urandom(200_000))  # a file source is copied as it is
    space = small_disk / "space"
    fill_disk(small_disk, leave_kb=200)  # room for the model (49 pages) and one page more: not for the rest
    assert main(["app", str(model), "--space", str(space)]) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not space.exists() or list(space.iterdir()) == []  # none of it
    assert [p.name for p in small_disk.iterdir() if p.name.startswith(".")] == []  # no staging folder left behind
    (small_disk / "filler").unlink()
    assert main(["app", str(model), "--space", str(space)]) == 0
    assert sorted(p.name for p in space.iterdir()) == sorted([SPACE_LEDGER, "README.md", "app.py", "model.pt",
                                                              "requirements.txt"])
