"""The one thread that runs torch work for the app: loading, scoring, generation, the judge.

Why one thread: on a small CPU, every thread that runs torch ops gets its own OpenMP team.
Once the teams hold more threads than there are cores, libgomp stops spinning between
parallel regions, and a 2-row decode step got about 1.8x slower on this project's 2-core
machine when a second torch thread existed (measured). Reusing one long-lived thread keeps
that to one extra team; the command line and the study run torch in the caller's thread
and add none.

    >>> from empathy_core.core.compute import on_compute
    >>> on_compute(sum, [1, 2, 3])
    6
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
THREAD_PREFIX = "empathy-generate"

_COMPUTE = ThreadPoolExecutor(max_workers=1, thread_name_prefix=THREAD_PREFIX)


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
