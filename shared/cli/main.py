"""`jobctl`: the entry point. Everything, imports included, runs under one-line errors: a
mistyped setting is refused while the commands' modules load, and must read as one line too."""

from __future__ import annotations

import sys

from shared.cli.exits import DEBUG_FLAG, one_line_errors


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    with one_line_errors(args):
        from shared.cli.commands import cli

        # standalone_mode=False: click raises instead of printing its usage block, so a usage
        # error is one line here too.
        result = cli.main([a for a in args if a != DEBUG_FLAG], prog_name="jobctl", standalone_mode=False)
        sys.exit(result if isinstance(result, int) else 0)  # an int here is click's own exit code (--help)


if __name__ == "__main__":
    main()
