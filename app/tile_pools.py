"""Where tile calls run: a local pool of threads, each driving a simulator process, or a Dask cluster."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import sys
import time
from typing import NamedTuple

__all__ = ["connect_scheduler", "wait_for_workers", "TilePool", "tile_pool"]


def connect_scheduler(scheduler, timeout: float = 20.0, say=None):
    """A Dask ``Client`` of ``scheduler``, or one line saying why not, within ``timeout`` seconds.

    A port that accepts connections but never speaks would hold Dask's own
    handshake for minutes, so the connection runs in a thread of its own and
    this waits for it a bounded time, saying every few seconds what it waits for.
    """
    import sys
    import threading

    try:
        from distributed import Client
    except ImportError:
        raise ValueError("--scheduler needs Dask: pip install distributed") from None
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    result: dict = {}

    def connect():
        try:
            result["client"] = Client(scheduler, timeout=timeout) if isinstance(scheduler, str) else Client(scheduler)
        except Exception as exc:   # noqa: BLE001 - reported below as the cause
            result["error"] = exc

    thread = threading.Thread(target=connect, daemon=True, name="dask-connect")
    thread.start()
    waited = 0.0
    while thread.is_alive() and waited < timeout:
        thread.join(min(5.0, timeout - waited))
        waited += 5.0
        if thread.is_alive() and waited < timeout:
            say(f"spikeacc: waiting for the Dask scheduler at {scheduler} ({waited:.0f} s of {timeout:.0f} s)")
    if thread.is_alive():
        raise ValueError(f"the Dask scheduler at {scheduler} did not answer within {timeout:.0f} s "
                         f"(is a dask-scheduler listening there?)")
    if "error" in result:
        raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {result['error']}") from None
    return result["client"]


def wait_for_workers(client, scheduler, timeout: float = 30.0, say=None) -> int:
    """The cluster's worker threads, once it has any; a scheduler with no workers for ``timeout`` seconds is
    one line, not a wait forever (its tasks would queue with nobody to run them)."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    start = time.monotonic()
    while True:
        threads = sum(client.nthreads().values())
        if threads:
            return threads
        waited = time.monotonic() - start
        if waited >= timeout:
            raise ValueError(f"the Dask scheduler at {scheduler} has no workers (waited {timeout:.0f} s): "
                             f"start one with `dask-worker {scheduler}`")
        say(f"spikeacc: the Dask scheduler at {scheduler} has no workers yet ({waited:.0f} s of {timeout:.0f} s)")
        time.sleep(min(5.0, timeout - waited))


class TilePool(NamedTuple):
    """Where calls run: ``submit(fn, *args) -> future``; ``share(obj)`` hands data sent to many calls
    (a projection's weights) to the workers once, returning what to pass instead."""

    submit: object
    share: object
    workers: int


@contextlib.contextmanager
def tile_pool(workers: int | None = None, scheduler: str | None = None):
    """A :class:`TilePool`: a local pool, or a Dask cluster at ``scheduler`` (an address or a cluster object).

    The local pool runs threads, each waiting on a simulator process of its
    own (the simulation itself is C++), so ``workers`` simulators run at once.
    """
    if scheduler is not None:
        client = connect_scheduler(scheduler)
        try:
            threads = wait_for_workers(client, scheduler)
            yield TilePool(lambda fn, *args: client.submit(fn, *args, pure=False),
                           lambda obj: client.scatter([obj], hash=False)[0], threads)
        finally:
            client.close()
        return
    workers = (os.cpu_count() or 1) if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"--workers must be a positive integer, got {workers!r}")
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        yield TilePool(pool.submit, lambda obj: obj, workers)
