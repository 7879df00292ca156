"""The machine's own parallel capacity: how much faster two single-thread processes get through fixed work than one.

``python -m benchmarks.parallel_capacity [--iterations N] [--processes P]``

Each workload runs in one process alone, then in P processes at once (default 2, started together at a barrier),
every process with one thread (torch, OpenMP, MKL and OpenBLAS threads = 1). Per process it records the CPU time
(user + sys) and the wall time of each iteration; the table gives the medians, and the capacity P x (alone / at
once): the speed-up P processes can reach over one on this machine for that kind of work, the ceiling for P Dask
workers of one thread each. The CPU-time column does not count the time a process waits for a core, so it holds up
when other processes load the machine; the wall-time column also counts that wait. Workloads:

- ``conv``: a forward pass of a 3-D encoder like the demo models' (``3d_tiny``: 8, 16, 32, 64 features, a
  48 x 64 x 64 patch, conv + instance norm + leaky ReLU, stride-2 downsampling), the batch's own kind of work;
- ``matmul``: 20 products of 192 x 192 float32 matrices, small enough for each core's own cache (compute-bound);
- ``stream``: ``a = b + c`` over three 32 MiB float32 arrays (memory-bandwidth-bound).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Callable

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
WORKLOADS = ("conv", "matmul", "stream")


def _workload(name: str) -> Callable[[], object]:
    """One iteration of the named workload, its data made once."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    if name == "conv":
        layers: list[torch.nn.Module] = []
        channels = 1
        for stage, features in enumerate((8, 16, 32, 64)):
            for conv in range(2):
                stride = 2 if stage and not conv else 1
                layers += [torch.nn.Conv3d(channels, features, 3, stride, 1), torch.nn.InstanceNorm3d(features),
                           torch.nn.LeakyReLU(0.01)]
                channels = features
        network = torch.nn.Sequential(*layers).eval()
        patch = torch.randn(1, 1, 48, 64, 64)

        def conv() -> object:
            with torch.inference_mode():
                return network(patch)
        return conv
    rng = np.random.default_rng(0)
    if name == "matmul":
        a, b = rng.random((192, 192), dtype=np.float32), rng.random((192, 192), dtype=np.float32)
        return lambda: [a @ b for _ in range(20)]
    b, c = rng.random(2**23, dtype=np.float32), rng.random(2**23, dtype=np.float32)
    out = np.empty_like(b)
    return lambda: np.add(b, c, out=out)


def _run(name: str, iterations: int, barrier: object, answers: object) -> None:
    """In a child process: warm up, wait for the others, then time each iteration (CPU and wall seconds)."""
    work = _workload(name)
    for _ in range(3):
        work()
    barrier.wait()
    cpu, wall = [], []
    for _ in range(iterations):
        began_cpu, began = time.process_time(), time.perf_counter()
        work()
        cpu.append(time.process_time() - began_cpu)
        wall.append(time.perf_counter() - began)
    answers.put((statistics.median(cpu), statistics.median(wall)))


def measure(name: str, processes: int, iterations: int) -> tuple[float, float]:
    """Median seconds per iteration (CPU, wall) over ``processes`` single-thread processes run at once."""
    context = multiprocessing.get_context("spawn")
    barrier, answers = context.Barrier(processes), context.Queue()
    children = [context.Process(target=_run, args=(name, iterations, barrier, answers)) for _ in range(processes)]
    for child in children:
        child.start()
    results = [answers.get() for _ in children]
    for child in children:
        child.join()
    return statistics.mean(r[0] for r in results), statistics.mean(r[1] for r in results)


def main(argv: list[str] | None = None) -> int:
    """Run each workload alone and P at once, and print the table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.parallel_capacity", description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=40, help="timed iterations per process (default 40)")
    parser.add_argument("--processes", type=int, default=2, help="processes at once (default 2)")
    args = parser.parse_args(argv)
    os.environ.update({variable: "1" for variable in THREAD_VARIABLES})
    p = args.processes
    sys.stdout.write(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the start; median seconds "
                     f"per iteration, {args.iterations} iterations per process\n| workload | alone (CPU / wall) | "
                     f"{p} at once (CPU / wall) | capacity by CPU time | capacity by wall time |\n"
                     "|---|---|---|---|---|\n")
    for name in WORKLOADS:
        alone, together = measure(name, 1, args.iterations), measure(name, p, args.iterations)
        sys.stdout.write(f"| {name} | {alone[0] * 1000:.1f} / {alone[1] * 1000:.1f} ms | {together[0] * 1000:.1f} / "
                         f"{together[1] * 1000:.1f} ms | {p * alone[0] / together[0]:.2f}x | "
                         f"{p * alone[1] / together[1]:.2f}x |\n")
    sys.stdout.write(f"load average {os.getloadavg()[0]:.2f} at the end\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
