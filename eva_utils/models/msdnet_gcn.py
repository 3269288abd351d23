"""The published MSDNet-GCN CIFAR-10 checkpoint: where it is, its download, and the sha256 recorded at download.

The file loads with :func:`eva_utils.models.loading.load_msdnet_gcn_checkpoint` (re-exported here), like
every model file; its layout is read off its keys by :func:`eva_utils.models.msdnet_config.infer_msdnet_config`.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from eva_utils.core.errors import CheckpointError
from eva_utils.core.files import sha256_file
from eva_utils.models.loading import load_msdnet_gcn_checkpoint

__all__ = [
    "MSDNET_GCN_CIFAR10_PAGE", "MSDNET_GCN_CIFAR10_URL", "download_msdnet_gcn_checkpoint", "load_msdnet_gcn_checkpoint",
    "verify_msdnet_gcn_download",
]

# The CIFAR-10 model published with MSDNet-GCN (used by the MSD-Net Grad-CAM visualiser): its page and direct download.
MSDNET_GCN_CIFAR10_PAGE = "https://www.dropbox.com/s/kjxh1oaxkhtpbmw/anytime_cifar_10.pth.tar"
MSDNET_GCN_CIFAR10_URL = MSDNET_GCN_CIFAR10_PAGE + "?dl=1"


def _recorded(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verify_msdnet_gcn_download(path: str | os.PathLike[str], sha256: str | None = None) -> str:
    """Check a checkpoint against ``sha256``, else against the hash recorded when it was downloaded.

    The authors of MSDNet-GCN publish no checksum, so :func:`download_msdnet_gcn_checkpoint` records the sha256 of
    the first download that loads as their architecture in ``<path>.sha256`` (``sha256sum`` format); every later use
    checks the file against it. A file with no record (saved by hand) is accepted as it is.

    Returns:
        The file's sha256.

    Raises:
        CheckpointError: the file's hash differs from ``sha256`` or from the recorded one.
    """
    path = Path(path).expanduser()
    digest = sha256_file(path)
    record = _recorded(path)
    if sha256 is None and record.is_file():
        sha256, source = record.read_text().split()[0], f"the hash recorded at download in {record}"
    else:
        source = "the expected hash"
    if sha256 is not None and digest != sha256.lower():
        raise CheckpointError(f"{path} has sha256 {digest[:16]}..., not {sha256[:16]}... ({source}): the file changed "
                              f"since; delete it (and {record.name}) to download it again")
    return digest


def download_msdnet_gcn_checkpoint(
    path: str | os.PathLike[str] = "anytime_cifar_10.pth.tar", url: str | None = None, progress: bool = True,
    sha256: str | None = None,
) -> Path:
    """Fetch the published MSDNet-GCN CIFAR-10 checkpoint into ``path``, unless a file is already there.

    The download goes to a temporary file renamed at the end (``torch.hub.download_url_to_file``), and is kept only
    if it loads as an MSDNet-GCN checkpoint (a moved link may serve a web page instead). Its sha256 is then recorded
    beside it (see :func:`verify_msdnet_gcn_download`).

    Args:
        path: where the checkpoint goes; a file already there is checked against its recorded hash
            (or ``sha256``) and returned.
        url: where it comes from (default ``MSDNET_GCN_CIFAR10_URL``, the published model).
        progress: show a progress bar.
        sha256: the hash the file must have; a download that differs is refused and deleted.

    Returns:
        ``path``.

    Raises:
        CheckpointError: the download failed, is not a checkpoint, or does not match ``sha256``
            (nothing is left at ``path``); a file already there no longer matches its hash.
    """
    path = Path(path).expanduser()
    if path.exists():
        verify_msdnet_gcn_download(path, sha256)
        return path
    url = url or MSDNET_GCN_CIFAR10_URL
    by_hand = f"download it by hand from {url.removesuffix('?dl=1')} and save it as {path}"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # hash_prefix: torch checks the hash on the temporary file and never renames a mismatch into place
        torch.hub.download_url_to_file(url, str(path), hash_prefix=sha256.lower() if sha256 else None, progress=progress)
    except RuntimeError as exc:  # "invalid hash value (expected ..., got ...)"
        raise CheckpointError(f"the file {url} served does not have the sha256 asked for ({exc}); nothing was kept") from exc
    except (OSError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        raise CheckpointError(f"could not download the MSD-Net checkpoint from {url} ({exc}); {by_hand}") from exc
    try:
        load_msdnet_gcn_checkpoint(path)
    except CheckpointError as exc:
        path.unlink(missing_ok=True)
        raise CheckpointError(f"what {url} served is not an MSDNet-GCN checkpoint ({exc}); {by_hand}") from exc
    _recorded(path).write_text(f"{sha256_file(path)}  {path.name}\n")
    return path
