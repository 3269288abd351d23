"""The numbers of a run: one pass (:class:`EpochStats`), every epoch (:class:`History`), and what ``fit`` calls
back during a run (:class:`Callback`, its one callback mechanism)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from eva_utils.core.errors import UserError
from eva_utils.core.files import atomic_write_text

__all__ = ["Callback", "EpochEndFunction", "EpochStats", "History", "batch_callback"]


@dataclass
class EpochStats:
    """Sample-weighted means over one pass; ``lr``: the rate at the end of a training pass (None in evaluation)."""

    loss: float
    acc: float
    exit_acc: list[float] = field(default_factory=list)
    lr: float | None = None


@dataclass
class History:
    """Per-epoch numbers of a run; ``history.save(path)`` / ``History.load(path)`` use JSON."""

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    test_loss: list[float] = field(default_factory=list)
    test_acc: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    test_exit_acc: list[list[float]] = field(default_factory=list)

    def append(self, epoch: int, train: EpochStats, test: EpochStats, seconds: float) -> None:
        """Record one epoch (1-based ``epoch``)."""
        self.epoch.append(epoch)
        self.train_loss.append(train.loss)
        self.train_acc.append(train.acc)
        self.test_loss.append(test.loss)
        self.test_acc.append(test.acc)
        self.lr.append(float("nan") if train.lr is None else train.lr)
        self.seconds.append(seconds)
        if test.exit_acc:
            self.test_exit_acc.append(list(test.exit_acc))

    def __len__(self) -> int:
        return len(self.epoch)

    def to_dict(self) -> dict[str, list]:
        """Plain lists, JSON-ready."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> History:
        """Inverse of :meth:`to_dict`, checked: an object of number lists, one entry per epoch.

        Raises:
            UserError: not an object, unknown keys, a value that is not a list of numbers, lists of unequal
                length (``lr``, ``seconds`` and ``test_exit_acc`` may also be empty), epochs that are not whole
                numbers above 0, each larger than the one before.
        """
        if not isinstance(data, dict):
            raise UserError(f"not a History: a JSON object of lists was expected, got {json.dumps(data)[:40]}")
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise UserError(f"not a History: unexpected keys {sorted(unknown)}")
        history = cls(**{k: _numbers(k, v) for k, v in data.items()})
        _check_epochs(history.epoch)
        lengths = {f.name: len(getattr(history, f.name)) for f in fields(cls)}
        uneven = {k: n for k, n in lengths.items() if n != len(history) and not (n == 0 and k in _OPTIONAL)}
        if uneven:
            raise UserError(f"not a History: {len(history)} epochs, but " +
                            ", ".join(f"{n} entries in {k}" for k, n in uneven.items()))
        return history

    def difference(self, other: History, names: tuple[str, str] = ("this history", "the other")) -> str | None:
        """The first number in which ``other`` differs from this history, or None (NaN equals NaN).

        Args:
            other: the history to compare with.
            names: what to call this history and ``other`` in the answer.

        Returns:
            E.g. ``"test_acc of epoch 2: 0.99 in history.json, 0.15 in the checkpoint"``, or None.
        """
        if len(self) != len(other):
            return f"{len(self)} epochs in {names[0]}, {len(other)} in {names[1]}"
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(other, f.name)
            if len(mine) != len(theirs):
                return f"{len(mine)} entries of {f.name} in {names[0]}, {len(theirs)} in {names[1]}"
            for i, (a, b) in enumerate(zip(mine, theirs, strict=True)):
                if a != b and json.dumps(a) != json.dumps(b):  # NaN: "NaN" == "NaN"
                    where = f"{f.name} of epoch {self.epoch[i]}" if f.name != "epoch" else f"epoch number {i + 1}"
                    return f"{where}: {str(a)[:20]} in {names[0]}, {str(b)[:20]} in {names[1]}"
        return None

    def save(self, path: str | os.PathLike) -> Path:
        """Write JSON atomically; returns the path."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> History:
        """Read a history written by :meth:`save`."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError) as exc:  # ValueError: bad JSON or bytes that are not UTF-8
            raise UserError(f"cannot read history {path}: {exc}") from exc
        try:
            return cls.from_dict(data)
        except UserError as exc:
            raise UserError(f"history {path} is damaged: {exc}") from exc


_OPTIONAL = ("lr", "seconds", "test_exit_acc")  # empty in histories that did not record them


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _fits(key: str, x: float) -> bool:
    """A finite value in its range: accuracies in [0, 1], the rest not negative (lr may be NaN: none recorded)."""
    try:
        x = float(x)
    except OverflowError:  # an integer beyond any float
        return False
    if key == "lr":
        return not math.isinf(x)
    return math.isfinite(x) and x >= 0 and (x <= 1 or "acc" not in key)


def _check_epochs(epochs: list) -> None:
    """Refuse epoch numbers that are not whole numbers above 0, each larger than the one before."""
    for i, epoch in enumerate(epochs):
        if not isinstance(epoch, int) or epoch < 1:
            raise UserError(f"not a History: epoch holds {str(epoch)[:20]}; epochs are whole numbers from 1 up")
        if i and epoch <= epochs[i - 1]:
            raise UserError(f"not a History: epoch {epoch} follows epoch {epochs[i - 1]}; each epoch must be "
                            "larger than the one before")


def _numbers(key: str, values: Any) -> list:
    """``values`` as a list of numbers (``test_exit_acc``: of lists of numbers), or a UserError naming ``key``."""
    ok = _is_number if key != "test_exit_acc" else lambda v: isinstance(v, list) and all(map(_is_number, v))
    if not isinstance(values, list) or not all(map(ok, values)):
        raise UserError(f"not a History: {key} must be a list of {'numbers' if key != 'test_exit_acc' else 'lists'}")
    flat = [x for v in values for x in v] if key == "test_exit_acc" else values
    bad = next((x for x in flat if not _fits(key, x)), None)
    if bad is not None:
        what = "finite and between 0 and 1" if "acc" in key else "finite and not negative"
        raise UserError(f"not a History: {key} holds {str(bad)[:20]}; its values must be {what}")
    return list(values)


class Callback:
    """What :func:`fit` calls during a run; subclass it and override what you need (both are no-ops here).

    ``on_batch_end(step, loss, lr)``: after every optimizer step; ``step`` counts batches from the start of
    the run (resumed runs continue the count), ``lr`` is the rate that batch used. ``on_epoch_end(epoch,
    history)``: after each epoch's checkpoint, ``epoch`` 1-based. ``eva_utils.tracking`` has two: the maps
    of fixed images per epoch (``CamTracker``) and TensorBoard logs (``TensorBoardLogger``).
    """

    def on_batch_end(self, step: int, loss: float, lr: float) -> None:
        """Called after every training batch."""

    def on_epoch_end(self, epoch: int, history: History) -> None:
        """Called after every epoch, once its checkpoint is written."""


class EpochEndFunction(Callback):
    """A function of (epoch, history) as a :class:`Callback` (fit's ``on_epoch_end``): called after each epoch only."""

    def __init__(self, on_epoch_end: Callable[[int, History], None]) -> None:
        self.on_epoch_end = on_epoch_end  # type: ignore[method-assign]


def batch_callback(callbacks: Sequence[Callback], first: int) -> Callable[[int, float, float], None] | None:
    """``train_one_epoch``'s ``on_batch_end`` that tells every callback the run's step (``first`` + batch + 1)."""
    if not callbacks:
        return None

    def batch_done(batch: int, loss: float, lr: float) -> None:
        for callback in callbacks:
            callback.on_batch_end(first + batch + 1, loss, lr)

    return batch_done
