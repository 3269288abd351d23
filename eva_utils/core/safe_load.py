"""One safe way to read a torch file (``torch.load(weights_only=True)`` with every failure classified once), and one
way to say why a state dict does not fit a model. A leaf module (torch and ``errors`` only), for every loader."""

from __future__ import annotations

import os
import pickle
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from eva_utils.core.errors import CheckpointError, DataNotFoundError, first_line, refused_global

__all__ = ["RefusedPickleError", "check_crcs", "safe_load", "state_dict_mismatch"]

# Modules whose functions in a pickle mean code that runs on loading (the classic os.system payload).
_CODE_MODULES = ("posix", "nt", "os", "subprocess", "builtins", "sys", "socket", "shutil", "runpy", "importlib",
                 "webbrowser", "pty", "commands", "code", "ctypes")


class RefusedPickleError(CheckpointError):
    """A file that ``weights_only=True`` refused because it pickles a Python object (``global_name``)."""

    def __init__(self, message: str, global_name: str) -> None:
        super().__init__(message)
        self.global_name = global_name


def safe_load(path: str | os.PathLike, refused_hint: str = "", corrupt_hint: str = "") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU; every command reads torch files through this. Failures,
    each one line naming the file:

    * the file does not exist: :class:`DataNotFoundError`;
    * it contains code that would run when loaded (e.g. ``posix.system``): :class:`RefusedPickleError`;
    * it pickles another Python object (a whole model saved with ``torch.save(model)``): :class:`RefusedPickleError`;
    * it is not a readable PyTorch file (truncated, corrupt, a web page, any other bytes): :class:`CheckpointError`;
    * it is a zip-format torch file whose bytes no longer match their CRCs (flipped bits on disk, a bad copy):
      :class:`CheckpointError`, before anything in it is used (this reads the file once more).

    Args:
        path: the file; never modified.
        refused_hint: appended to a refused pickle's message: what the caller offers (a flag, a safer way).
        corrupt_hint: appended to an unreadable file's message.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"{path} does not exist: check the path")
    check_crcs(path, corrupt_hint)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (PermissionError, IsADirectoryError, MemoryError) as exc:  # the file may be fine; reading it is not
        raise CheckpointError(f"{path} cannot be read ({type(exc).__name__}: {first_line(exc)})") from exc
    except Exception as exc:  # arbitrary bytes reach the legacy unpickler: KeyError, IndexError, struct.error, ...
        refused = refused_global(exc) if isinstance(exc, pickle.UnpicklingError) else None
        if refused is not None:
            raise RefusedPickleError(_refused_message(path, refused, refused_hint), refused) from exc
        reason = _unreadable_reason(exc)
        raise CheckpointError(f"{path} is not a readable PyTorch file: truncated or corrupt, or not a checkpoint at all "
                              f"({reason}). {corrupt_hint}".rstrip(". ")) from exc


def _unreadable_reason(exc: BaseException) -> str:
    """What stopped torch.load, in a few words: not its weights_only essay, whose advice (``weights_only=False``) is
    wrong for a file that is not a torch file at all."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # torch's weights-only unpickler met bytes it cannot read
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n\n")[0].strip()
        return f"unpickling stopped at: {detail[:80]}"
    return f"{type(exc).__name__}: {first_line(exc)[:80]}"


def check_crcs(path: Path, hint: str = "") -> None:
    """Refuse a zip-format torch file whose stored CRCs do not match its bytes (torch.load does not check them)."""
    try:
        if not zipfile.is_zipfile(path):
            return  # the legacy format, or not a torch file at all: torch.load says which
        with zipfile.ZipFile(path) as archive:
            member = archive.testzip()  # the first record whose CRC-32 does not match its bytes
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError, ValueError, NotImplementedError):
        return  # unreadable, or a broken zip structure rather than changed bytes: torch.load classifies it
    if member is not None:
        raise CheckpointError(f"{path} is damaged: its record {member} does not match the checksum stored with it (bytes "
                              f"changed on disk or in a copy), so it was not used. {hint}".rstrip(". "))


def _refused_message(path: Path, refused: str, hint: str) -> str:
    module = refused.split(".")[0] if "." in refused else "builtins"  # torch names builtins bare: "print"
    if module in _CODE_MODULES:  # no hint: never advise loading it anyway
        return (f"{path} contains code ({refused}) that would run when the file is loaded, so it was refused "
                "(torch.load with weights_only=True); it is not a model file: delete it unless you made it yourself")
    return (f"{path} holds a pickled Python object ({refused}); loading it runs code stored in the file, which can do "
            f"anything you can (delete or upload files), so it was refused. {hint}").rstrip(". ")


def state_dict_mismatch(state: Mapping[str, torch.Tensor], model: torch.nn.Module, limit: int = 3) -> str | None:
    """Plain words for how ``state`` differs from ``model.state_dict()``; None when it fits.

    Names up to ``limit`` keys of each kind: tensors the file lacks, tensors the model does not have, and tensors of
    another shape (with both shapes).
    """
    current = model.state_dict()

    def some(keys: list[str]) -> str:
        more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
        return ", ".join(keys[:limit]) + more

    missing = [k for k in current if k not in state]
    unexpected = [k for k in state if k not in current]
    shapes = [f"{k}: file {tuple(v.shape)} vs model {tuple(current[k].shape)}"
              for k, v in state.items() if k in current and v.shape != current[k].shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} of the model's tensors are missing from the file ({some(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} tensors the model does not have ({some(unexpected)})")
    if shapes:
        parts.append(f"{len(shapes)} tensors of another shape ({some(shapes)})")
    return "; ".join(parts) or None
