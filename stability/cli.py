"""The ``stability`` command line (DESIGN section 8).

User errors print one ``error:`` line and exit 2; runtime failures exit 1; success 0.
Subcommand modules are imported only when their command runs, to keep start-up fast.
"""

from __future__ import annotations

import argparse
import sys

from stability.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one ``error:`` line and status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def build_parser() -> Parser:
    parser = Parser(prog="stability", description="Hyperparameter-stability studies of ViT_P, ViT_C and CNNs.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("models", help="list the model zoo with complexity counts")
    p.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    p.add_argument("--image-size", type=int, default=224)
    return parser


def dispatch(args: argparse.Namespace) -> int:
    if args.command == "models":
        from stability import catalog

        return catalog.run(args.json, args.image_size)
    raise UserError(f"unknown command {args.command!r}")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return dispatch(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
