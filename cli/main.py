"""The ``stability`` command line (docs/design.md, "Interfaces").

User errors print one ``error:`` line and exit 2; runtime failures exit 1; success 0. The
parser (``cli.parser``) binds each subcommand to the function that runs it, imported only
when that command runs, to keep start-up fast.
"""

from __future__ import annotations

import shlex
import sys

from cli.parser import build_parser, run_parsed
from stability.errors import UserError


def main(argv: list[str] | None = None) -> int:
    from sweeps.lock import LockLost

    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        args = build_parser().parse_args(argv)
        args.command_line = shlex.join(["stability", *argv])  # what `status` names to retry failed trials
        return run_parsed(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except LockLost as e:  # a runtime failure, not the user's mistake
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
