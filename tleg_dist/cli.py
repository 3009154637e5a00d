"""How every command line (train, convert, write_ffcv, demo, sweep, experiment) ends.

    def main(argv=None) -> int:
        args = parser.parse_args(argv)          # argparse's usage errors exit 2 by themselves
        with cli.usage():
            cfg = config.load(args.config, args.overrides)
        work(cfg)
    if __name__ == "__main__":
        sys.exit(cli.run(main))

A UserError (recipe, data, weights, disk) and a peer rank, host or network that stopped answering
in a collective print one line naming the culprit, `error: <Class>: <message>` (with several ranks,
after `[rank R on HOST] `), and exit with the code below; anything else is a bug and keeps its
traceback. TLEG_TRACEBACK=1 shows the traceback for all of them.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
from typing import Callable, Iterator

from tleg_dist.utils.errors import UserError

# Every entry point's exit codes, spelt only here.
EXIT_OK = 0
EXIT_USER = 1            # an input or output named in the message is unusable
EXIT_USAGE = 2           # the command line, or the recipe it names, is wrong: nothing was started (as argparse)
EXIT_PEER_LOST = 3       # resumable: slurm/learngene.sh requeues the job on it
EXIT_INTERRUPTED = 130   # Ctrl-C, as a shell reports a SIGINT death (128 + 2)


@contextlib.contextmanager
def usage() -> Iterator[None]:
    """UserErrors raised inside exit 2 instead of 1. By phase, not class: the same ConfigError is
    the command line's fault when loading the recipe, and a run's when DeepSpeed's file is bad."""
    try:
        yield
    except UserError as e:
        e.exit_code = EXIT_USAGE
        raise


def _failure(e: BaseException) -> tuple[int, str, str] | None:
    """(exit code, kind, message) for an error that names its culprit; None for a bug."""
    if isinstance(e, KeyboardInterrupt):
        return EXIT_INTERRUPTED, "KeyboardInterrupt", "interrupted"
    if isinstance(e, UserError):
        return getattr(e, "exit_code", EXIT_USER), type(e).__name__, str(e)
    from tleg_dist.training.distributed import peer_failure  # imports torch: only once something failed

    line = peer_failure(e)
    return None if line is None else (EXIT_PEER_LOST, "PeerLost", line)


def run(fn: Callable[..., object], *args, prefix: str = "") -> int:
    """fn(*args)'s exit code: the int it returns (anything else counts as 0), or the code of the
    error it raised after printing `[rank R on HOST] <prefix>error: <Kind>: <message>` to stderr."""
    try:
        result = fn(*args)
    except (Exception, KeyboardInterrupt) as e:  # not SystemExit: argparse has printed its usage already
        failure = _failure(e)
        if failure is None or os.environ.get("TLEG_TRACEBACK") == "1":
            raise
        code, kind, message = failure
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # which of the ranks' interleaved lines said it
            prefix = f"[rank {os.environ.get('RANK', '?')} on {socket.gethostname()}] {prefix}"
        print(f"{prefix}error: {kind}: {message}", file=sys.stderr, flush=True)
        return code
    return result if isinstance(result, int) else EXIT_OK
