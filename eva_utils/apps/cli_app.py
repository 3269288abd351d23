"""``eva-utils app``: serve the Grad-CAM explorer (:mod:`eva_utils.apps.app`), or write it as a Hugging Face Space.

    eva-utils app                                    # the shipped ResNet18, on http://127.0.0.1:7860
    eva-utils app runs/r18/checkpoint.pt --port 8000
    eva-utils app --space my_space                   # a folder to push to huggingface.co/spaces
"""

from __future__ import annotations

import argparse
from typing import Any

from eva_utils.apps.app import DEFAULT_SOURCE, Explorer, build_app, write_space
from eva_utils.apps.argtypes import positive_int
from eva_utils.core.devices import resolve_device
from eva_utils.core.errors import UserError, first_line

__all__ = ["add_parser"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``app`` on the ``eva-utils`` subcommands; returns its parser."""
    p = subparsers.add_parser("app", description="Serve a page that explains images with Grad-CAM at every stage of a "
                              "model, and browses its most confident mistakes. Needs Gradio: pip install \"eva-utils[app]\".")
    p.add_argument("model", nargs="?", default=DEFAULT_SOURCE,
                   help="what eva-utils cam accepts: pretrained:NAME, a checkpoint, a torchvision name, a state dict "
                        "with --arch (default %(default)s)")
    p.add_argument("--arch", help="architecture of a state dict or TorchScript file")
    p.add_argument("--weights", default="default", help="for a torchvision name: default (ImageNet) or none")
    p.add_argument("--unsafe-pickle", action="store_true", help="allow a fully pickled model (can run code)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default %(default)s)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default %(default)s: this machine only)")
    p.add_argument("--port", type=positive_int, default=7860, help="default %(default)s")
    p.add_argument("--share", action="store_true", help="also a public gradio.live link (only when asked)")
    p.add_argument("--space", metavar="DIR", help="write a Hugging Face Space folder instead of serving")
    p.add_argument("--repo-url", help="with --space: install eva_utils from this repository")
    p.add_argument("--overwrite", action="store_true", help="with --space: write into a folder that has files")
    p.set_defaults(func=_cmd_app)
    return p


def _cmd_app(args: argparse.Namespace) -> int:
    if args.space:
        written = write_space(args.space, args.model, repo_url=args.repo_url, overwrite=args.overwrite)
        print(f"wrote a Hugging Face Space into {args.space}: {', '.join(p.name for p in written)}")
        print(f"try it here first: cd {args.space} && python app.py")
        return 0
    explorer = Explorer.from_source(args.model, arch=args.arch, weights=args.weights,
                                    device=resolve_device(args.device), unsafe_pickle=args.unsafe_pickle)
    page = build_app(explorer)
    print(f"model: {explorer.classifier.description}")
    try:
        page.launch(server_name=args.host, server_port=args.port, share=args.share, inbrowser=False, quiet=True)
    except OSError as exc:  # the port is taken, the host is not this machine's, ...
        raise UserError(f"cannot serve on {args.host}:{args.port} ({first_line(exc)}): choose another --port") from exc
    return 0


if __name__ == "__main__":  # a module, not a command: say which one
    from eva_utils.apps.cli import not_a_command

    raise SystemExit(not_a_command(__spec__.name, "app"))
