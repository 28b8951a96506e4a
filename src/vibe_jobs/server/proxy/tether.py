"""A stdio upstream dies with the proxy, however the proxy ends.

The proxy stops its upstreams as the MCP specification asks (stdin closed, a grace period, SIGTERM, SIGKILL),
but only while it lives. The client that started the proxy follows the same steps with the proxy, in its own
time: closing the proxy's stdin, it kills the proxy after the same grace, before the proxy is done with an
upstream that ignores its stdin closing. The upstream runs in a process group of its own (so that it can be
stopped as a whole), so the kill of the proxy's group missed it, and it ran on for good, owned by nobody.
A kill -9 or an out-of-memory kill of the proxy left its upstreams the same way.

On Linux the upstream is started through a small launcher that asks the kernel to SIGKILL it when the proxy
dies (`PR_SET_PDEATHSIG`, kept across `exec`), then becomes the upstream's command. Elsewhere the command
runs as given.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys

# -I -S: no site, no environment read: the launcher adds about 7 ms to a start and is not steered by the upstream's
# environment. If the proxy died before the request held, the launcher's parent is another already: it stops.
_LAUNCHER = """import os, sys
try:
    import ctypes
    tethered = ctypes.CDLL(None, use_errno=True).prctl(1, 9, 0, 0, 0) == 0  # PR_SET_PDEATHSIG, SIGKILL
except Exception:
    tethered = False
if tethered and os.getppid() != int(sys.argv[1]):
    os._exit(1)
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as exc:
    sys.stderr.write(f"cannot start {sys.argv[2]}: {exc.strerror}\\n")
    os._exit(127)
"""


def tether(command: str, args: list[str], env: dict[str, str], cwd: str | None = None) -> tuple[str, list[str]]:
    """`command args` run through the launcher (on Linux): the kernel kills it when this process dies.

    A command that cannot be run raises here what starting it directly would (FileNotFoundError,
    PermissionError): the launcher itself always starts, and the proxy says "cannot start" with the reason."""
    if not sys.platform.startswith("linux"):
        return command, args
    _check_runnable(command, env, cwd)
    return sys.executable, ["-I", "-S", "-c", _LAUNCHER, str(os.getpid()), command, *args]


def _check_runnable(command: str, env: dict[str, str], cwd: str | None) -> None:
    if os.sep not in command:  # found on the PATH the command will run with
        if shutil.which(command, path=env.get("PATH", os.defpath)) is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)
        return
    path = os.path.join(cwd or os.getcwd(), command)  # an absolute command stays as it is
    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)
    if not os.access(path, os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), command)
