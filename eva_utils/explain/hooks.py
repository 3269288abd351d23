"""The forward hooks every map is made from: each target layer's output, kept for one pass.

pytorch-grad-cam's ``ActivationsAndGradients`` in one small class: :class:`Capture` registers the hooks,
:meth:`Capture.activation` hands back the one output a layer produced, :meth:`Capture.release` removes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from eva_utils.core.errors import UserError

__all__ = ["Capture"]


class Capture:
    """Forward hooks that keep each target layer's output; ``release()`` removes them.

    With ``graph=True`` every captured activation is a node of the autograd graph (a fresh leaf if nothing before it
    requires grad, e.g. frozen parameters), and the module hands a *clone* on downstream, so later in-place ops
    (torchvision's ``ReLU(inplace=True)``) cannot overwrite the tensor we differentiate with respect to.
    """

    def __init__(self, layers: Mapping[str, nn.Module], graph: bool) -> None:
        self.graph = graph
        self.names = {id(module): name for name, module in reversed(list(layers.items()))}  # first name wins
        self.outputs: dict[int, list[torch.Tensor]] = {key: [] for key in self.names}
        self.handles = [module.register_forward_hook(self._save) for module in {id(m): m for m in layers.values()}.values()]

    def _save(self, module: nn.Module, inputs: Any, output: Any) -> torch.Tensor:
        if not isinstance(output, torch.Tensor):
            raise UserError(f"layer {self.names[id(module)]!r} returns a {type(output).__name__}, not a feature map tensor; "
                            f"pick a module that outputs (N, C, h, w)")
        if not self.graph:
            self.outputs[id(module)].append(output.detach().clone())  # (N, C, h, w), safe from in-place ops
            return output
        activation = output if output.requires_grad else output.detach().requires_grad_()
        self.outputs[id(module)].append(activation)  # (N, C, h, w)
        return activation.clone()

    def activation(self, module: nn.Module) -> torch.Tensor:
        """The single output the module produced in the last forward pass."""
        saved = self.outputs[id(module)]
        name = self.names[id(module)]
        if not saved:
            raise UserError(f"layer {name!r} was not used in the model's forward pass; pick another layer")
        if len(saved) > 1:
            raise UserError(f"layer {name!r} ran {len(saved)} times in one forward pass (a module shared inside the model, "
                            f"like torchvision's BasicBlock.relu); pick its parent block or a module used once")
        if saved[0].ndim != 4:
            raise UserError(f"layer {name!r} outputs shape {tuple(saved[0].shape)}, not a (N, C, h, w) feature map; "
                            f"pick a convolutional layer or block")
        return saved[0]

    def release(self) -> None:
        """Remove the hooks."""
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
