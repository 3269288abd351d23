"""A notebook's run in Colab: where it goes (Google Drive survives a recycled VM), where it resumes, and a recipe
that fits the machine (no accidental hours on a CPU).

    OUT = str(run_folder(OUT, drive=DRIVE))                     # on Google Drive when DRIVE (in Colab)
    config = for_this_machine(config, allow_cpu=ALLOW_CPU)      # no GPU: stop, or width 16 with ALLOW_CPU
    result = run_training(config, resume=resume_point(OUT, RESUME), overwrite=not RESUME)

and the second line of every notebook's install cell, after ``%pip install``: :func:`use_commit`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import replace
from importlib import metadata
from pathlib import Path

from eva_utils.core.devices import resolve_device
from eva_utils.core.errors import UserError
from eva_utils.training.recipe import TrainConfig

__all__ = ["DRIVE_ROOT", "for_this_machine", "in_colab", "resume_point", "run_folder", "use_commit"]

DRIVE_ROOT = Path("/content/drive")
_CPU_MINUTES_PER_EPOCH_W64 = 22.7  # measured: one epoch of 50,000 images at width 64, 2-core AMD EPYC (README)


def in_colab() -> bool:
    """Whether this runs in a Google Colab kernel."""
    return "google.colab" in sys.modules


def run_folder(out: str | os.PathLike[str], drive: bool = False) -> Path:
    """Where a notebook's run goes: ``out``, or ``out`` on Google Drive when ``drive`` and in Colab.

    A recycled Colab VM wipes ``/content``; a folder on Drive survives it. Mounts Drive (Colab asks once).

    Raises:
        UserError: ``drive`` outside Colab (there is no Drive to mount: keep ``DRIVE = False``).
    """
    if not drive:
        return Path(out)
    if not in_colab():
        raise UserError("DRIVE = True needs Google Colab (it keeps the run on Google Drive); elsewhere set DRIVE = False")
    from google.colab import drive as colab_drive  # only in Colab

    colab_drive.mount(str(DRIVE_ROOT))
    return DRIVE_ROOT / "MyDrive" / "eva_utils" / Path(out).relative_to(Path(out).anchor)


def for_this_machine(config: TrainConfig, allow_cpu: bool = False) -> TrainConfig:
    """``config`` where a GPU will run it; on a CPU, stop before hours of training, or scale it down.

    Without a GPU a run wider than 16 (a full-width ResNet18: about 8 hours on a 2-core CPU) is refused, unless
    ``allow_cpu``: then it runs at width 16 (about an hour). Smoke runs (``max_batches`` set) pass as they are.

    Raises:
        UserError: no GPU and not ``allow_cpu``; the message says how to get one.
    """
    if config.max_batches is not None or config.width <= 16 or resolve_device(config.device).type == "cuda":
        return config
    if not allow_cpu:
        hours = config.epochs * _CPU_MINUTES_PER_EPOCH_W64 * (config.width / 64) ** 2 / 60
        raise UserError(f"no GPU: width {config.width} for {config.epochs} epochs would take about {hours:.0f} hours on a "
                        "2-core CPU. In Colab: Runtime > Change runtime type > GPU, then run all again; or set "
                        "ALLOW_CPU = True for ResNet18 at width 16 on the CPU (about an hour, 84.7% measured)")
    return replace(config, width=16, device="cpu")


def resume_point(out: str | os.PathLike[str], resume: bool) -> Path | None:
    """The checkpoint a notebook continues from: ``out/checkpoint.pt`` when ``resume`` and it exists."""
    checkpoint = Path(out) / "checkpoint.pt"
    return checkpoint if resume and checkpoint.is_file() else None


def _run(command: list[str], what: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise UserError(f"{what}\n{done.stderr[-3000:]}")
    return done.stdout


def _installed_origin() -> tuple[str | None, str | None]:
    """The URL and commit pip recorded when it installed eva_utils from git (PEP 610's ``direct_url.json``)."""
    try:
        origin = json.loads(metadata.distribution("eva-utils").read_text("direct_url.json") or "{}")
    except metadata.PackageNotFoundError:
        return None, None
    return origin.get("url"), origin.get("vcs_info", {}).get("commit_id")


def use_commit(repo_url: str, ref: str = "main") -> str:
    """Make the installed eva_utils the commit that ``ref`` of ``repo_url`` names now; print which; return it.

    pip keeps an installed eva_utils of the same version when the branch has moved on or ``REPO_URL`` names a fork;
    so this asks git which commit ``ref`` is and, when pip's record names another, installs it (``--no-deps``).

    Returns:
        The full commit (or ``ref`` itself when it is a commit hash that git does not list).

    Raises:
        UserError: git cannot reach ``repo_url`` or it has no branch or tag ``ref``; pip cannot install it.
    """
    listed = _run(["git", "ls-remote", repo_url, ref], f"could not reach {repo_url}: check REPO_URL (a public "
                  "git repository, e.g. https://github.com/<you>/eva_utils)").split()
    if not listed and not re.fullmatch(r"[0-9a-f]{7,40}", ref):
        raise UserError(f"{repo_url} has no branch or tag {ref!r}: check REF (a branch, tag or commit hash)")
    commit = listed[0] if listed else ref
    url, installed = _installed_origin()
    if url == repo_url and installed and installed.startswith(commit):
        print(f"eva_utils from {repo_url} at commit {commit[:12]}")
        return commit
    _run([sys.executable, "-m", "pip", "install", "-q", "--force-reinstall", "--no-deps", f"git+{repo_url}@{commit}"],
         f"could not install eva_utils from {repo_url}@{commit}: check REPO_URL and REF")
    print(f"eva_utils from {repo_url} at commit {commit[:12]}, installed over {url or 'none'} at {(installed or '?')[:12]}:"
          " the old one is still loaded, so Runtime > Restart session, then run all")
    return commit
