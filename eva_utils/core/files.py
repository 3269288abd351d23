"""Files written whole or not at all, their checksums, and THE output-folder guard: one home for checkpoints,
histories, downloads and every command's output folder."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from eva_utils.core.errors import UserError, first_line
from eva_utils.core.interrupts import interrupts_deferred

__all__ = ["atomic_copy", "atomic_write", "atomic_write_text", "check_replaceable", "claim_output_file",
           "claim_output_folder", "interrupts_deferred", "record_written", "remove_owned_files",
           "remove_stale_temporaries", "sha256_file", "sha256_of", "staged_folder"]


def sha256_of(data: bytes) -> str:
    """The hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """The hex sha256 of a file, read in chunks (a checkpoint can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _dead(pid: str) -> bool:
    """Whether ``pid`` (read from a temporary's name) is the id of another process, no longer running (``kill -9``)."""
    if not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # someone else's process, running
        pass
    return False


def remove_stale_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Delete half-written temporaries of ``path`` left by a killed process; those of running ones are left alone.

    Returns:
        The files removed.
    """
    path = Path(path)
    temporaries = path.parent.glob(f".{glob.escape(path.name)}.tmp*")
    removed = [stale for stale in temporaries if _dead(stale.name.rsplit(".tmp", 1)[-1])]
    for stale in removed:
        stale.unlink(missing_ok=True)
    return removed


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` through ``write(file)`` into a temporary beside it, synced, then renamed over it.

    A reader sees the old file or the new one, never half of one; a failure (a full disk) leaves the old file as it was
    and no temporary behind. Stale temporaries of killed writers are removed first. Ctrl-C during the write stops the
    program right after it (:func:`interrupts_deferred`).

    Raises:
        OSError: the write failed; ``path`` is unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with interrupts_deferred():  # the whole new file lands, then Ctrl-C stops the program
            with open(tmp, "wb") as f:
                write(f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
    except OSError as exc:  # named after the file meant, not the temporary (a writer into a stream names none)
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_copy(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """:func:`atomic_write` of a copy of ``source``: ``path`` is the old file or the whole copy, never half of one."""
    with open(source, "rb") as src:
        return atomic_write(path, lambda f: shutil.copyfileobj(src, f, 1 << 20))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """:func:`atomic_write` of UTF-8 text."""
    data = text.encode("utf-8")
    return atomic_write(path, lambda f: f.write(data))


# ----------------------------------------------------------------------------- the one output-folder guard


_STAGING = ".eva_utils_staging"  # the hidden folder of staged_folder inside an output folder, then a process id


def _held(path: Path, owned: Iterable[str]) -> list[Path]:
    """The files in ``path`` matching the names or glob patterns ``owned``, sorted (a staging folder is no file)."""
    return sorted({found for pattern in owned for found in path.glob(pattern) if not found.name.startswith(_STAGING)})


def _refuse_protected(path: Path, protect: Iterable[str | os.PathLike[str]], param: str) -> None:
    where = path.resolve()
    for folder in protect:
        kept = Path(folder).resolve()
        if kept == where or where in kept.parents:
            raise UserError(f"{param} {path} is or contains {folder}, which must be kept: choose another {param}",
                            param=param)


def _refuse_foreign(path: Path, owned: Iterable[str], param: str) -> None:
    """Refuse a folder holding anything its writer did not write: overwrite may only replace the writer's files."""
    mine = set(_held(path, owned))
    foreign = sorted(p for p in path.iterdir() if p not in mine and not p.name.startswith(_STAGING))
    if foreign:
        raise UserError(f"{param} {path} holds {foreign[0].name}{f' and {len(foreign) - 1} more' if len(foreign) > 1 else ''}"
                        f", which this command did not write (even overwrite=True replaces only its own files): "
                        f"choose a new or empty {param}", param=param)


def claim_output_folder(path: str | os.PathLike[str], *, overwrite: bool, owned: Iterable[str] = (),
                        exclusive: bool = False, protect: Iterable[str | os.PathLike[str]] = (), kind: str = "files",
                        hint: str = "", param: str = "out") -> Path:
    """Decide whether a writer may put its files into the folder ``path``, then create it; nothing is deleted.

    Every output folder of the package is claimed here (a run, a report, the CAM figures, a Space).

    Args:
        path: the output folder.
        overwrite: allow replacing the writer's own files (``owned``) already there.
        owned: names or glob patterns of the writer's files; one already there is refused unless ``overwrite``.
        exclusive: the folder is the writer's alone (a report's): refuse one holding anything not in ``owned``, even
            with ``overwrite``.
        protect: folders that must survive (the run a report reads): ``path`` may not be one or contain one.
        kind: what the owned files are, for the message (``"a run"``, ``"figures"``).
        hint: another way out, for the message (``"continue it with resume=..., "``).
        param: the parameter that named ``path``, for the messages and ``UserError.param``.

    Returns:
        ``path`` as a :class:`~pathlib.Path`, created.

    Raises:
        UserError: ``path`` is a file, is or contains a protected folder, holds foreign files (``exclusive``),
            holds the writer's files without ``overwrite``, or cannot be created or written.
    """
    path = Path(path).expanduser()
    if path.exists() and not path.is_dir():
        raise UserError(f"{param} {path} is a file, not a folder: choose a folder", param=param)
    _refuse_protected(path, protect, param)
    if path.is_dir():
        if exclusive:
            _refuse_foreign(path, owned, param)
        held = _held(path, owned)
        if held and not overwrite:
            more = f", {len(held)} in all" if len(held) > 1 else ""
            raise UserError(f"{path} already holds {kind} ({held[0].name}{more}): {hint}pass overwrite=True to replace "
                            f"{'them' if len(held) > 1 else 'it'}, or choose another {param}", param="overwrite")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # under a file, read-only, ...
        raise UserError(f"cannot create {param} {path} ({first_line(exc)}): choose another folder", param=param) from exc
    if not os.access(path, os.W_OK | os.X_OK):
        raise UserError(f"{param} {path} is not writable: choose another folder", param=param)
    return path


def claim_output_file(path: str | os.PathLike[str], *, overwrite: bool, param: str = "out") -> Path:
    """Decide whether a writer may create the file ``path`` (an archive beside a folder); nothing is deleted.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        UserError: ``path`` is a folder, or a file already there without ``overwrite``.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{path} is a folder, not a file: choose another {param}", param=param)
    if path.exists() and not overwrite:
        raise UserError(f"{path} already exists: pass overwrite=True to replace it, or choose another {param}",
                        param="overwrite")
    return path


def remove_owned_files(path: str | os.PathLike[str], owned: Iterable[str]) -> list[Path]:
    """Delete the files matching ``owned`` in a folder claimed with ``exclusive=True, overwrite=True``: what its
    writer wrote there before, so that nothing stale stays beside the new files. Folders are never removed.

    Returns:
        The files removed.
    """
    removed = [found for found in _held(Path(path), owned) if found.is_file() or found.is_symlink()]
    for found in removed:
        found.unlink()
    return removed


def _recorded(folder: str | os.PathLike[str], ledger: str) -> dict[str, str]:
    """The names and sha256s ``folder/ledger`` records; a missing or damaged ledger records nothing."""
    try:
        recorded = json.loads((Path(folder) / ledger).read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return {k: v for k, v in recorded.items() if isinstance(v, str)} if isinstance(recorded, dict) else {}


def record_written(folder: str | os.PathLike[str], paths: Iterable[Path], ledger: str, keep: bool = False) -> Path:
    """Note in ``folder/ledger`` the sha256 of each file a writer just wrote there (see :func:`check_replaceable`);
    ``keep``: add to what the ledger records already (a writer that adds files run after run)."""
    hashes = {**(_recorded(folder, ledger) if keep else {}), **{Path(p).name: sha256_file(p) for p in paths}}
    return atomic_write_text(Path(folder) / ledger, json.dumps(hashes, indent=1, sort_keys=True) + "\n")


def check_replaceable(folder: str | os.PathLike[str], names: Iterable[str], ledger: str, writer: str,
                      param: str = "out") -> None:
    """Refuse, before anything is written, to replace a file of ``names`` in ``folder`` that ``writer`` did not
    write there or that was changed since: ``overwrite`` replaces a writer's own files only, as its ledger
    (:func:`record_written`) records them. A missing or damaged ledger records nothing."""
    recorded = _recorded(folder, ledger)
    for name in names:
        path = Path(folder) / name
        if path.exists() and (not path.is_file() or recorded.get(name) != sha256_file(path)):
            raise UserError(f"{path} was not written by {writer}, or was changed since: overwrite replaces only its own "
                            f"files; move {name} away, or choose another {param}", param=param)


@contextlib.contextmanager
def staged_folder(path: str | os.PathLike[str], owned: Iterable[str]) -> Iterator[Path]:
    """Replace a writer's files in the claimed folder ``path`` all at once or not at all.

    The writer writes into the hidden folder inside ``path`` that this yields (on the same file system as the files it
    replaces, even when ``path`` is a mount point). When the block ends, the files matching ``owned`` that an earlier
    write left are removed and the new ones moved in (renames, with Ctrl-C deferred); when it raises (a full disk,
    Ctrl-C), the hidden folder is removed and ``path`` is as it was. One left by a killed process is removed by the
    next write, and the output-folder guard does not count it as the user's.
    """
    path = Path(path)
    for stale in path.glob(f"{_STAGING}*"):
        if _dead(stale.name.removeprefix(_STAGING)):
            shutil.rmtree(stale, ignore_errors=True)
    staging = path / f"{_STAGING}{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        try:
            yield staging
        except OSError as exc:  # named after the file meant, not the hidden folder's copy
            if exc.filename and Path(exc.filename).parent == staging:
                raise OSError(exc.errno, exc.strerror or str(exc), str(path / Path(exc.filename).name)) from exc
            raise
        with interrupts_deferred():
            remove_owned_files(path, owned)
            for new in sorted(staging.iterdir()):
                os.replace(new, path / new.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
