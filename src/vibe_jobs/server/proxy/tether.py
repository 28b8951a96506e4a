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
os.execvp(sys.argv[2], sys.argv[2:])
"""


def tether(command: str, args: list[str], env: dict[str, str]) -> tuple[str, list[str]]:
    """`command args` run through the launcher (on Linux): the kernel kills it when this process dies.

    A command that is not found raises FileNotFoundError here, as starting it directly would: the launcher
    itself is always found, and the proxy says "cannot start" with the name of what is missing."""
    if not sys.platform.startswith("linux"):
        return command, args
    if os.sep not in command and shutil.which(command, path=env.get("PATH", os.defpath)) is None:
        raise FileNotFoundError(2, "No such file or directory", command)
    return sys.executable, ["-I", "-S", "-c", _LAUNCHER, str(os.getpid()), command, *args]
