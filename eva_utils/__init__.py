"""eva_utils: train CNNs on CIFAR-10 and look inside them with Grad-CAM."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
