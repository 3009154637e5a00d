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
import re
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
EXIT_JOBS_FAILED = 1     # a plan's launcher: a job failed or was not run (its report names them)
EXIT_PREEMPTED = 1       # a plan's job task that stopped for preemption without a result (Slurm requeues the job)


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
    line = peer_failure(e)
    return None if line is None else (EXIT_PEER_LOST, "PeerLost", line)


# What gloo, NCCL and the TCP store say when a peer rank, its host or the network went away.
_PEER_LOST = ("connection closed by peer", "connection reset by peer", "timed out", "no route to host",
              "connection refused", "broken pipe", "socket timeout", "nccl communicator was aborted")
_PEER_ADDR = re.compile(r"\[([0-9a-fA-F.:]+)\]:\d+")
_SOURCE_PREFIX = re.compile(r"^\[[^\]]*\.(?:cc|cpp|h):\d+\]\s*")


def _host_of(addr: str) -> str:
    try:
        return f"{socket.gethostbyaddr(addr)[0]} ({addr})"
    except OSError:
        return addr


def peer_failure(err: BaseException) -> str | None:
    """One line for a collective (or the rendezvous) that failed because a peer rank, its host
    or the network did; None for any other error, which keeps its traceback."""
    import torch.distributed as dist  # imported here: only once something failed

    text = str(err).strip()
    first = _SOURCE_PREFIX.sub("", text.splitlines()[0] if text else "")
    lowered = text.lower()
    if not (isinstance(err, dist.DistError) or
            (isinstance(err, RuntimeError) and any(s in lowered for s in _PEER_LOST))):
        return None
    first = first.split(". This is typically caused")[0]  # gloo's advice, said better below
    peer = _PEER_ADDR.search(first)
    who = f"peer {_host_of(peer.group(1))}" if peer else "a peer rank"
    return (f"a collective failed: {first} ({who} or the network to it stopped answering; "
            f"the newest complete checkpoint is kept, resume with --resume auto)")


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
