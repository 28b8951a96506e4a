"""A wire tap between the proxy and a real upstream server: `python upstream_tap.py LOG -- COMMAND ARGS...`.

Runs COMMAND, relays stdin to it and its stdout back unchanged, and appends to LOG one line per message the
upstream received (`> {json}`) plus `pid N` when it starts, so tests see what reached the real upstream (a
cancel) and can kill it. Standard library only.
"""

from __future__ import annotations

import subprocess
import sys
import threading


def main() -> int:
    log_path, sep, *command = sys.argv[1:]
    assert sep == "--" and command, "usage: upstream_tap.py LOG -- COMMAND [ARGS...]"
    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"pid {child.pid}\n")
        log.flush()
        lock = threading.Lock()

        def relay_in() -> None:
            assert child.stdin is not None
            for line in sys.stdin.buffer:
                with lock:
                    log.write("> " + line.decode("utf-8", "replace"))
                    log.flush()
                try:
                    child.stdin.write(line)
                    child.stdin.flush()
                except (BrokenPipeError, ValueError):
                    return
            child.stdin.close()

        threading.Thread(target=relay_in, daemon=True).start()
        for line in child.stdout:
            sys.stdout.buffer.write(line)
            sys.stdout.buffer.flush()
    return child.wait()


if __name__ == "__main__":
    sys.exit(main())
