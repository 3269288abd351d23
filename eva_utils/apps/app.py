"""An interactive Grad-CAM explorer for teaching: ``eva-utils app`` (Gradio, an optional extra).

``Explorer`` does the work without gradio: an image's top-5 classes, Grad-CAM of every stage of a ResNet, of a
chosen layer of any other CNN or of every exit of an MSD-Net, and the most confident mistakes on the bundled
CIFAR-10 test images. ``build_app(explorer)`` puts a two-tab Gradio page over it (explain an image; mistakes),
where bad input is a readable message (``gr.Error``). Install with ``pip install "eva-utils[app]"``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from eva_utils import __version__
from eva_utils.core.errors import UserError, unknown_name
from eva_utils.core.files import (
    atomic_copy,
    atomic_write_text,
    check_replaceable,
    claim_output_folder,
    record_written,
    staged_folder,
)
from eva_utils.data.cifar10 import CIFAR10_CLASSES, ArrayDataset, load_sample
from eva_utils.data.images import MAX_PIXELS, MIN_SIDE, UnreadableImageError, check_image_size, read_image  # noqa: F401 (MIN_SIDE, MAX_PIXELS: app names of 0.1.0)
from eva_utils.evaluation.metrics import Predictions, misclassified
from eva_utils.explain import cam, multiexit
from eva_utils.models.loading import PRETRAINED_PREFIX, Classifier, load_model
from eva_utils.models.msdnet_model import MSDNet
from eva_utils.plots import overlay

__all__ = ["DEFAULT_SOURCE", "Explanation", "Explorer", "build_app", "write_space"]

DEFAULT_SOURCE = PRETRAINED_PREFIX + "resnet18_w16_cifar10"
PREDICTED = "predicted class"
DISPLAY_SIDE = 1024  # pixels: the longest side of an image shown back in the page (WebP stops at 16,383)
PANEL = 160  # side of each map shown, in pixels (a 32x32 map is enlarged without smoothing)


@dataclass
class Explanation:
    """What the page shows for one image: the top-5 classes, one captioned overlay per layer or exit."""

    top5: dict[str, float]
    panels: list[tuple[np.ndarray, str]]  # (uint8 RGB image, caption)
    note: str


@dataclass
class Explorer:
    """A model to explore, with the layers (or exits) it explains and the bundled images to show."""

    classifier: Classifier
    classes: tuple[str, ...]  # the model's class names (numbers when it has none)
    layers: dict[str, nn.Module] = field(default_factory=dict)  # label -> module, shallow to deep
    map_sizes: dict[str, str] = field(default_factory=dict)  # label -> "4x4"
    examples: ArrayDataset | None = None  # the bundled CIFAR-10 test images, for a CIFAR-10 model

    @classmethod
    def from_source(cls, source: str = DEFAULT_SOURCE, arch: str | None = None, weights: str = "default",
                    device: str | torch.device | None = None, unsafe_pickle: bool = False) -> Explorer:
        """Load a model as ``eva-utils cam`` does (a name, a file, ``pretrained:NAME``) and pick its layers."""
        classifier = load_model(source, arch=arch, weights=weights, device=device, unsafe_pickle=unsafe_pickle)
        model, size = classifier.model, classifier.preset.size
        if isinstance(model, MSDNet):
            taps = model.exit_feature_modules()
            layers = {f"exit {k}": taps[k - 1] for k in range(1, model.num_exits + 1)}
        elif cam.is_resnet(model):
            layers = cam.resnet_layers(model)
        else:
            layers = cam.conv_layers(model, size)  # every conv layer, in forward order: the page picks among them
        examples = load_sample(train=False) if classifier.classes == CIFAR10_CLASSES else None
        classes = tuple(classifier.classes or (str(i) for i in range(_num_outputs(classifier))))
        sizes = {label: f"{h}x{w}" for label, (h, w) in cam.map_sizes(model, layers, size).items()}
        return cls(classifier, classes, layers, sizes, examples)

    @property
    def picks_a_layer(self) -> bool:
        """A model without named stages or exits: the page offers a layer picker (default the last conv)."""
        return not (self.is_multiexit or cam.is_resnet(self.classifier.model))

    @property
    def is_multiexit(self) -> bool:
        return isinstance(self.classifier.model, MSDNet)

    @property
    def _output_index(self) -> int | None:
        return -1 if self.is_multiexit else None  # an MSD-Net's answer is its last exit's

    def load_image(self, image: Any) -> np.ndarray:
        """A file path (checked from its header before decoding), a PIL image or an HWC array -> uint8 RGB
        (H, W, 3), refused when missing, not an image, too small or too large."""
        if image is None:
            raise UserError("no image: upload one, or pick a bundled test image")
        array = np.asarray(_read_checked(Path(image)) if isinstance(image, (str, os.PathLike)) else image)
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
            raise UserError(f"the image is an array of shape {array.shape}: an (H, W), (H, W, 3) or (H, W, 4) one is needed")
        check_image_size(array.shape[1], array.shape[0])
        return array[..., :3] if array.ndim == 3 and array.shape[-1] == 4 else array

    def image_tensor(self, image: Any) -> torch.Tensor:
        """What :meth:`load_image` accepts -> the model's normalised (1, 3, S, S) input."""
        return self.classifier.preset(self.load_image(image).astype(np.uint8))[None]

    def target(self, name: str | None, probs: np.ndarray) -> int:
        """The class to explain: the predicted one, or one by name (a clear error for an unknown name)."""
        if not name or name == PREDICTED:
            return int(probs.argmax())
        if name not in self.classes:
            raise unknown_name("class", name, self.classes)
        return self.classes.index(name)

    def probabilities(self, x: torch.Tensor) -> np.ndarray:
        """(K,) softmax of the model's (last) output for one image."""
        return cam.class_probs(self.classifier.model, x, output_index=self._output_index)[0]

    def explain(self, image: Any, method: str = "gradcam", target: str | None = PREDICTED, alpha: float = 0.5,
                layer: str | None = None) -> Explanation:
        """Top-5 classes and the Grad-CAM of every layer (or exit, or one ``layer``) of one image."""
        key = cam.method_key(method)
        if key not in cam.ONE_PASS_METHODS:
            raise UserError(f"the explorer runs the one-pass methods ({', '.join(cam.ONE_PASS_METHODS)}), not {method}")
        alpha = _opacity(alpha)
        x = self.image_tensor(image).to(next(self.classifier.model.parameters()).device)
        probs = self.probabilities(x)
        wanted = self.target(target, probs)
        if layer in (None, "", "all"):
            layer = next(reversed(self.layers)) if self.picks_a_layer else None  # every stage, or the last conv
        layers = self.layers if layer is None else {layer: self._layer(layer)}
        maps = self._maps(x, layers, key, wanted)
        rgb = self.classifier.preset.to_rgb(x.cpu())[0]
        panels = [(_enlarge(overlay(rgb, maps[label][0], alpha=alpha)), f"{label}: {self.map_sizes.get(label, '?')} map")
                  for label in layers]
        top5 = {self.classes[i]: float(probs[i]) for i in np.argsort(-probs)[:5]}
        note = (f"Grad-CAM ({key}) of **{self.classes[wanted]}** (p = {probs[wanted]:.2f}); each map is scaled to "
                f"[0, 1] on its own: compare where maps are high, not how high. Red = most important.")
        return Explanation(top5, [(_enlarge(rgb), "image"), *panels], note)

    def _layer(self, name: str) -> nn.Module:
        return self.layers[name] if name in self.layers else cam.resolve_layers(self.classifier.model, [name])[name]

    def _maps(self, x: torch.Tensor, layers: dict[str, nn.Module], key: str, wanted: int) -> dict[str, np.ndarray]:
        model = self.classifier.model
        if not self.is_multiexit:
            return cam.layer_cams(model, x, layers, targets=[wanted], method=key)
        exits = [int(label.split()[-1]) for label in layers]
        maps = multiexit.exit_cams(model, x, exits=exits, targets=[wanted], method=key)
        return {f"exit {k}": m for k, m in maps.items()}

    def example(self, class_name: str, number: int = 0) -> np.ndarray:
        """A bundled CIFAR-10 test image of a class (uint8 HWC), for a CIFAR-10 model."""
        if self.examples is None:
            raise UserError("this model's classes are not CIFAR-10's: upload an image instead")
        if class_name not in self.examples.classes:
            raise unknown_name("class", class_name, self.examples.classes)
        rows = np.flatnonzero(self.examples.labels == self.examples.classes.index(class_name))
        return self.examples.images[rows[int(number) % len(rows)]]

    def mistakes(self, k: int = 20) -> list[list[Any]]:
        """The ``k`` most confident mistakes on the bundled test images: [test image number, true, predicted, p]."""
        if self.examples is None:
            return []
        x = torch.stack([self.classifier.preset(image) for image in self.examples.images])
        probs = cam.class_probs(self.classifier.model, x, batch_size=250, output_index=self._output_index)
        labels = self.examples.labels
        pred = Predictions(probs, probs.argmax(1), labels, np.arange(len(labels)))
        return [[int(i), self.classes[labels[i]], self.classes[pred.preds[i]], round(float(pred.confidence[i]), 3)]
                for i in misclassified(pred, k=k)]


def _read_checked(path: Path) -> Any:
    """The image at ``path`` (size rule checked from its header before decoding), its errors naming the file only."""
    try:
        return read_image(path)
    except UnreadableImageError as exc:  # an upload's path is a temporary folder of Gradio's: say the file's name
        raise UserError(str(exc).replace(str(path), path.name)) from exc


def _for_display(image: np.ndarray) -> np.ndarray:
    """uint8 RGB shown back in the page: a small one enlarged without smoothing, a long one shrunk to fit
    :data:`DISPLAY_SIDE` (Gradio sends WebP, which stops at 16,383 pixels a side; an 8x100,000 strip is fine)."""
    from PIL import Image

    longest = max(image.shape[:2])
    if longest <= DISPLAY_SIDE:
        return _enlarge(image.astype(np.float32) / 255.0, 256)
    scale = DISPLAY_SIDE / longest
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return np.asarray(Image.fromarray(np.ascontiguousarray(image[..., :3] if image.ndim == 3 else image))
                      .convert("RGB").resize(size, Image.Resampling.BOX))


def _opacity(alpha: Any) -> float:
    """The overlay's opacity as a number in [0, 1] (through the API it may come as any JSON value)."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:
        raise UserError(f"the opacity must be a number between 0 and 1, got {alpha!r}")
    return value


def _enlarge(rgb: np.ndarray, side: int = PANEL) -> np.ndarray:
    """float RGB (H, W, 3) in [0, 1] -> uint8, enlarged by a whole factor up to ``side`` without smoothing."""
    factor = max(1, side // max(rgb.shape[:2]))
    return (np.kron(rgb, np.ones((factor, factor, 1))) * 255).round().astype(np.uint8)


def _num_outputs(classifier: Classifier) -> int:
    size = classifier.preset.size
    return cam.class_probs(classifier.model, torch.zeros(1, 3, size, size)).shape[1]


# ----------------------------------------------------------------------------- the page


def _gradio() -> Any:
    try:
        import gradio
    except ImportError as exc:
        raise UserError('the explorer needs Gradio: pip install "eva-utils[app]" (or pip install gradio)') from exc
    return gradio


def build_app(explorer: Explorer | str | None = None, title: str = "Grad-CAM explorer") -> Any:
    """The Gradio page over ``explorer`` (or a model source; default the shipped ResNet18).

    Returns:
        A ``gradio.Blocks``, queued (requests run one at a time); ``.launch()`` serves it.

    Raises:
        UserError: Gradio is not installed (says how to install it), or the model cannot be loaded.
    """
    gr = _gradio()
    if not isinstance(explorer, Explorer):
        explorer = Explorer.from_source(explorer or DEFAULT_SOURCE)
    mistakes = explorer.mistakes()
    on = _handlers(gr, explorer, mistakes)
    with gr.Blocks(title=title) as page:
        gr.Markdown(f"# {title}\n{explorer.classifier.description}")
        with gr.Tabs() as tabs:
            with gr.Tab("Explain an image", id="explain-tab"):
                view = _explain_tab(gr, explorer, on)
            with gr.Tab("Mistakes", id="mistakes-tab"):
                _mistakes_tab(gr, mistakes, on, tabs, view)
    return page.queue(default_concurrency_limit=1)


def _handlers(gr: Any, explorer: Explorer, mistakes: list[list[Any]]) -> SimpleNamespace:
    """The page's callbacks, each showing a :class:`UserError` in the page as a readable message (``gr.Error``)."""

    def guarded(fn: Any) -> Any:
        @functools.wraps(fn)  # keeps fn's signature: Gradio reads it (the clicked cell comes as gr.SelectData)
        def run(*args: Any) -> Any:
            try:
                return fn(*args)
            except UserError as exc:
                raise gr.Error(str(exc)) from exc
        return run

    def explain(image: Any, method: str, target: str, alpha: float, layer: str | None = None) -> tuple[Any, Any, str]:
        result = explorer.explain(image, method, target, alpha, layer)
        return result.top5, result.panels, result.note

    def chosen(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # (what the page shows, what is explained)
        return _for_display(image), image

    def uploaded(path: str) -> tuple[np.ndarray, np.ndarray]:
        return chosen(explorer.load_image(path))

    def example(class_name: str) -> tuple[np.ndarray, np.ndarray]:
        return chosen(explorer.example(class_name))

    def pick_mistake(event: Any) -> tuple[np.ndarray, np.ndarray]:
        row = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
        return chosen(explorer.examples.images[mistakes[int(row)][0]])

    pick_mistake.__annotations__ = {"event": gr.SelectData}  # how Gradio knows to pass the clicked cell
    return SimpleNamespace(explain=guarded(explain), uploaded=guarded(uploaded), example=guarded(example),
                           pick_mistake=guarded(pick_mistake))


def _explain_tab(gr: Any, explorer: Explorer, on: SimpleNamespace) -> SimpleNamespace:
    """The first tab's components and events; returns what the mistakes tab drives (image, controls, outputs)."""
    current = gr.State(None)  # the image to explain (uint8 RGB), per user
    with gr.Row():
        with gr.Column():
            # a file, not gr.Image: the explorer reads it, so a bad file gets a readable message
            upload = gr.File(label="upload an image (PNG, JPEG, WebP, ...)", type="filepath", elem_id="upload")
            shown = gr.Image(label="the image", interactive=False, elem_id="image")
        with gr.Column():
            method = gr.Dropdown(list(cam.ONE_PASS_METHODS), value="gradcam", label="CAM method")
            target = gr.Dropdown([PREDICTED, *explorer.classes], value=PREDICTED, label="class to explain",
                                 allow_custom_value=True)
            alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="opacity of the map")
            controls = [current, method, target, alpha]
            if explorer.picks_a_layer:
                names = list(explorer.layers)
                controls.append(gr.Dropdown(names, value=names[-1], label="layer (conv layers, first to last)"))
            if explorer.examples is not None:
                with gr.Row():
                    pick = gr.Dropdown(list(explorer.examples.classes), value=explorer.examples.classes[0],
                                       label="a bundled test image of class")
                    use = gr.Button("use it")
            go = gr.Button("Explain", variant="primary", elem_id="explain")
    top5 = gr.Label(num_top_classes=5, label="top-5 classes", elem_id="top5")
    gallery = gr.Gallery(label="Grad-CAM of every stage (the map's size at the model's input)", columns=6,
                         height=240, elem_id="maps")
    note = gr.Markdown(elem_id="note")
    upload.upload(on.uploaded, [upload], [shown, current])
    go.click(on.explain, controls, [top5, gallery, note])
    if explorer.examples is not None:
        use.click(on.example, [pick], [shown, current])
    return SimpleNamespace(image=[shown, current], controls=controls, outputs=[top5, gallery, note])


def _mistakes_tab(gr: Any, mistakes: list[list[Any]], on: SimpleNamespace, tabs: Any, view: SimpleNamespace) -> None:
    """The second tab: the most confident mistakes; a click explains one in the first tab."""
    if not mistakes:
        gr.Markdown("Mistakes need a CIFAR-10 model (the bundled test images are CIFAR-10's).")
        return
    gr.Markdown("The most confident mistakes on the bundled CIFAR-10 test images: click a row to "
                "explain it in the first tab.")
    table = gr.Dataframe(mistakes, headers=["test image", "true", "predicted", "p"], interactive=False,
                         elem_id="mistakes")
    # a click shows the image in the first tab and explains it there
    table.select(on.pick_mistake, None, view.image).then(
        lambda: gr.Tabs(selected="explain-tab"), None, [tabs]).then(on.explain, view.controls, view.outputs)


# ----------------------------------------------------------------------------- a Hugging Face Space

_SPACE_APP = '''"""A Hugging Face Space: the eva_utils Grad-CAM explorer. Runs locally too: python app.py"""
import os

from eva_utils.apps.app import build_app

build_app({source!r}).launch(server_name=os.environ.get("GRADIO_SERVER_NAME", "0.0.0.0"))
'''


SPACE_LEDGER = ".eva_utils_space.json"
"""The file in a Space folder that records what ``write_space`` wrote (the only files ``overwrite`` may replace)."""


def write_space(folder: str | os.PathLike[str], source: str = DEFAULT_SOURCE, repo_url: str | None = None,
                overwrite: bool = False) -> list[Path]:
    """A folder that runs as a Hugging Face Space (and locally with ``python app.py``).

    Writes ``app.py``, ``requirements.txt`` (eva_utils from ``repo_url`` with the app extra),
    ``README.md`` with the Space's front matter, and the model file when ``source`` is a file.

    Raises:
        UserError: the folder holds a Space's files already (without ``overwrite``), or is a file; a file it would
            replace that it did not write (or that was changed since). Other files in the folder are kept.
    """
    gr = _gradio()
    model_source = Path(source).name if Path(source).is_file() else source
    names = ["app.py", "requirements.txt", "README.md", *([model_source] if model_source != source else [])]
    folder = Path(folder).expanduser()
    if folder.is_dir():  # a file of the user's with a Space's name is refused first, --overwrite or not
        check_replaceable(folder, names, SPACE_LEDGER, "eva-utils app --space", param="folder")
    out = claim_output_folder(folder, overwrite=overwrite, owned=(*names, SPACE_LEDGER), kind="a Space's files",
                              param="folder")
    package = f"eva-utils[app] @ git+{repo_url}" if repo_url else f"eva-utils[app]=={__version__}"
    with staged_folder(out, [*names, SPACE_LEDGER]) as staging:  # all of the Space lands, or none of it (a full disk)
        written = [
            *([atomic_copy(source, staging / model_source)] if model_source != source else []),
            atomic_write_text(staging / "app.py", _SPACE_APP.format(source=model_source)),
            atomic_write_text(staging / "requirements.txt", f"{package}\ngradio=={gr.__version__}\n"),
            atomic_write_text(staging / "README.md", "---\ntitle: Grad-CAM explorer\nemoji: 🔍\nsdk: gradio\n"
                              f"sdk_version: {gr.__version__}\napp_file: app.py\npinned: false\n---\n\n"
                              "Grad-CAM of every stage of a CIFAR-10 ResNet, made with "
                              "[eva_utils](https://github.com/eva-utils/eva_utils).\n"),
        ]
        record_written(staging, written, SPACE_LEDGER)
    return sorted(out / path.name for path in written)
