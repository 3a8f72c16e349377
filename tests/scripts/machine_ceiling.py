#!/usr/bin/env python3
"""What this machine can do at best for a head's training step, to read `facelab bench train`
and `facelab bench experiment` against: the arithmetic rate of a large single-precision GEMM
(PyTorch, 2 threads) and the rate of streaming memory (NumPy, one thread), and what one step of
the notebook's head (1280 -> 1024 -> 512 -> classes, batch 16, RMSprop) needs of each.

    python3 -m pip install torch numpy
    python3 tests/scripts/machine_ceiling.py [--hidden 1024 512] [--classes 4] [--batch 16]

The step's arithmetic: the forward products, the weight gradients (as many multiply-adds
again) and the backward products to every layer's input but the first (the features need no
gradient). RMSprop reads and writes every weight and its mean square once per step.
"""
import argparse, time

import numpy as np
import torch

p = argparse.ArgumentParser()
p.add_argument("--hidden", type=int, nargs="+", default=[1024, 512])
p.add_argument("--classes", type=int, default=4)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--features", type=int, default=1280)
a = p.parse_args()


def best_seconds(work, runs):
    for _ in range(3):
        work()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


torch.set_num_threads(2)
n = 2048
x, y = torch.randn(n, n), torch.randn(n, n)
gemm = 2 * n**3 / best_seconds(lambda: x @ y, 10) / 1e9

floats = 32 * 1024 * 1024 // 4
src, dst = np.ones(floats, np.float32), np.empty(floats, np.float32)
stream = 2 * 4 * floats / best_seconds(lambda: np.add(src, 1.0, out=dst), 10) / 1e9

sizes = [a.features, *a.hidden, a.classes]
layers = list(zip(sizes, sizes[1:]))
weights = sum(i * o for i, o in layers)
parameters = weights + sum(o for _, o in layers)
forward = 2 * a.batch * weights
backward = 2 * a.batch * sum(i * o for i, o in layers[1:])
step_flop = 2 * forward + backward
rmsprop_bytes = 4 * 4 * parameters

print(f"torch {torch.__version__} sgemm {n}x{n}, 2 threads: {gemm:.1f} GFLOP/s")
print(f"numpy stream (read + write 32 MB), one thread: {stream:.1f} GB/s")
print(
    f"head {sizes} batch {a.batch}: {step_flop / 1e6:.1f} MFLOP per step = "
    f"{1e3 * step_flop / (gemm * 1e9):.2f} ms at the sgemm rate; RMSprop streams "
    f"{rmsprop_bytes / 1e6:.1f} MB = {1e3 * rmsprop_bytes / (stream * 1e9):.2f} ms at one "
    f"thread's stream rate"
)
