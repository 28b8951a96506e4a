import os

import pytest

from vibe_jobs.ids import POOL, new_job_id


def test_ids_are_32_hex_digits_and_never_repeat() -> None:
    ids = [new_job_id() for _ in range(3 * POOL + 1)]  # across several pools
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_hands_out_ids_of_its_own() -> None:
    new_job_id()  # the parent holds a pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the next id it hands out, to the parent
        os.write(write, new_job_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert child != new_job_id()
