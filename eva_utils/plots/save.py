"""Writing a figure to disk."""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.figure import Figure

from eva_utils.core.files import atomic_write

__all__ = ["save_figure"]


def save_figure(fig: Figure, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Save ``fig`` (folders created) and return the path; atomically, so a full disk leaves an older file whole.

    The format is the suffix's (``.png``, ``.pdf``, ``.svg``, ...).
    """
    path = Path(path)
    fmt = path.suffix[1:].lower() or "png"
    return atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi, bbox_inches="tight"))
