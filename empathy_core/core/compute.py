"""The one thread that runs torch work for the app: loading, scoring, generation, the judge.

Why one thread: on a small CPU, every thread that runs torch ops gets its own OpenMP team.
Once the teams hold more threads than there are cores, libgomp stops spinning between
parallel regions, and a 2-row decode step got about 1.8x slower on this project's 2-core
machine when a second torch thread existed (measured). Reusing one long-lived thread keeps
that to one extra team; the command line and the study run torch in the caller's thread
and add none.

Short jobs (scoring one text: one forward pass) need not wait behind a long generation:
``urgent`` queues them on a second, short-job lane that the generation drains between its
decode steps (``run_urgent``, called by the generation's per-step streamer), still on this one
thread, so no second OpenMP team exists. While a short job runs there, the generation's own
hooks step aside (``hooks_paused``), so the short job sees the plain model.

    >>> from empathy_core.core.compute import on_compute
    >>> on_compute(sum, [1, 2, 3])
    6
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
THREAD_PREFIX = "empathy-generate"

_COMPUTE = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_PREFIX)
_URGENT: queue.SimpleQueue[tuple[Callable[[], Any], Future]] = queue.SimpleQueue()
_LOCAL = threading.local()


def on_compute_thread() -> bool:
    """Whether the caller already runs on the compute thread."""
    return threading.current_thread().name.startswith(THREAD_PREFIX)


def on_compute(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` on the compute thread and return its result.

    Called from the compute thread itself, it runs ``fn`` directly instead of deadlocking.
    """
    if on_compute_thread():
        return fn(*args, **kwargs)
    return _COMPUTE.submit(fn, *args, **kwargs).result()


def submit(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
    """Queue ``fn`` on the compute thread without waiting; its future.

    Refused from the compute thread itself, where waiting on the future would deadlock.
    """
    if on_compute_thread():
        raise RuntimeError("Cannot queue work for the compute thread from the compute thread without waiting.")
    return _COMPUTE.submit(fn, *args, **kwargs)


def hooks_paused() -> bool:
    """Whether a short job is running between a long job's steps: the long job's hooks must leave it alone."""
    return bool(getattr(_LOCAL, "paused", False))


def run_urgent() -> int:
    """Run every queued short job now, on the calling (compute) thread; how many ran.

    A long job calls this between its steps; each short job is also queued on the compute thread
    as an ordinary job, so when no long job runs it starts at once."""
    if not on_compute_thread():  # a library caller's own thread: the app's short jobs are not its to run
        return 0
    ran = 0
    while True:
        try:
            fn, fut = _URGENT.get_nowait()
        except queue.Empty:
            return ran
        if not fut.set_running_or_notify_cancel():
            continue
        _LOCAL.paused = True
        try:
            fut.set_result(fn())
        except BaseException as exc:  # handed to the waiting caller, who re-raises it
            fut.set_exception(exc)
        finally:
            _LOCAL.paused = False
        ran += 1


def urgent(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a short ``fn(*args, **kwargs)`` on the compute thread, between a running generation's
    decode steps if there is one, and return its result."""
    if on_compute_thread():
        return fn(*args, **kwargs)
    fut: Future[T] = Future()
    _URGENT.put((functools.partial(fn, *args, **kwargs), fut))
    _COMPUTE.submit(run_urgent)
    return fut.result()
