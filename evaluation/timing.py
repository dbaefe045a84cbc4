"""Timing for the benchmarks: rounds of paired runs, medians of paired ratios, and what the machine is.

Every benchmark times its variants in rounds: each round runs every variant once, the order rotating by one
each round (with two variants it alternates), so the drift of a shared machine hits all variants alike and
the per-round ratios are paired.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

CPU = torch.device("cpu")
Progress = Callable[[int, dict[str, list[float]]], None]


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued kernels (a no-op on the CPU), so a clock reading covers them."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device = CPU) -> float:
    """Seconds of one call of ``fn``, the device synchronised before and after."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def time_rounds(
    runners: dict[str, Callable[[], Any]],
    rounds: int,
    device: torch.device = CPU,
    *,
    labels: dict[str, str] | None = None,
    decimals: int = 3,
    progress: Progress | None = None,
) -> dict[str, list[float]]:
    """Seconds of each runner in each round; the order rotates by one each round.

    After each round ``progress(round_index, times)`` is called, or by default one line is printed:
    ``  round r/R: <label> <seconds> s, ...`` (``labels`` maps runner names to printed names).
    """
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            times[name].append(timed(runners[name], device))
        if progress is not None:
            progress(r, times)
        else:
            line = ", ".join(f"{(labels or {}).get(n, n)} {times[n][-1]:.{decimals}f} s" for n in names)
            print(f"  round {r + 1}/{rounds}: {line}", flush=True)
    return times


def paired_ratio(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Median over rounds of x / y (paired: each ratio from one round)."""
    return statistics.median(x / y for x, y in zip(xs, ys))


def device_name(device: torch.device) -> str:
    """GPU name, or the CPU model from /proc/cpuinfo."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def available_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """torch.set_num_threads(threads) (None: every available core) inside the block, restored after it."""
    previous = torch.get_num_threads()
    torch.set_num_threads(available_cores() if threads is None else threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
