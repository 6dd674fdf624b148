"""Run a list of ``anomalib`` CLI commands, each in its own forked process, as the ``anomalib`` console script would.

Used by ``tests/test_no_side_effects.py``: once with the start-up hook on, once with ``ANOMALIB_NPGMF_NO_HOOK=1``.
Importing anomalib costs ~5 s; paying it once per hook state and forking a child per command (a fresh copy of the
imported interpreter, so no command sees another's state) makes a 15-command matrix cost seconds, not minutes. The
import goes through ``anomalib.cli.cli`` first, exactly as the console script's ``from anomalib.cli.cli import main``,
so the hook fires at the same point as for a user.

Usage: ``python hook_matrix_runner.py commands.json output_dir``; writes ``<i>.out``, ``<i>.err`` and ``<i>.rc``.
"""

import json
import os
import sys
from pathlib import Path


def _run_child(arguments: list[str], output: Path, index: int) -> None:
    """In the forked child: point fds 1 and 2 at files, run anomalib's ``main``, leave with its exit code."""
    code = 0
    try:
        for fd, suffix in ((1, "out"), (2, "err")):
            file = os.open(output / f"{index}.{suffix}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(file, fd)
            os.close(file)
        sys.argv = ["anomalib", *arguments]
        from anomalib.cli.cli import main

        try:
            result = main()
            code = result if isinstance(result, int) else 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException as error:  # anything else: report it like an uncaught exception would
        sys.stderr.write(f"uncaught {type(error).__name__}: {error}\n")
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def main() -> None:
    """Import anomalib's CLI once, then run every command in a forked child and record its output."""
    commands = json.loads(Path(sys.argv[1]).read_text())
    output = Path(sys.argv[2])
    output.mkdir(parents=True, exist_ok=True)
    import anomalib.cli.cli  # noqa: F401  (what the console script imports first; the hook fires in here)

    for index, arguments in enumerate(commands):
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _run_child(arguments, output, index)
        _, status = os.waitpid(pid, 0)
        (output / f"{index}.rc").write_text(str(os.waitstatus_to_exitcode(status)))


if __name__ == "__main__":
    main()
