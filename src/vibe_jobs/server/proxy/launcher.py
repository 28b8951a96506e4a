"""Run as `python -I -S launcher.py PARENT_PID ERROR_FD COMMAND [ARGS...]` by `tether.spawn`: ask the kernel to
SIGKILL this process when PARENT_PID dies (`PR_SET_PDEATHSIG`, kept across `exec`), then become COMMAND.

It imports nothing of vibe_jobs (it runs isolated: no site, no environment read). A failed exec writes its
errno to ERROR_FD; a successful one closes it (close-on-exec): the way `subprocess` reports its own exec
failures, so the proxy says why a command cannot start as a direct start would.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def _tether() -> bool:
    try:
        import ctypes

        return int(ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    except (ImportError, OSError, AttributeError):
        return False  # no ctypes or no prctl: the command runs as given


def main(argv: list[str]) -> None:
    parent, error_fd, command = int(argv[1]), int(argv[2]), argv[3:]
    os.set_inheritable(error_fd, False)
    if _tether() and os.getppid() != parent:
        os._exit(1)  # the proxy died before the request held: nobody is left to speak to
    for name in ("SIGPIPE", "SIGXFSZ"):  # Python ignores them at start; a command started directly does not
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        os.write(error_fd, str(exc.errno or 0).encode())
        os._exit(127)


if __name__ == "__main__":
    main(sys.argv)
