#!/usr/bin/env python3
"""Time one head training step in PyTorch and in facelab, alternating, in one session.

    python3 -m pip install torch numpy
    python3 tests/scripts/compare_torch_head.py [--facelab target/release/facelab] [--rounds 3]

The step is the same in both: a 1280-feature batch of 16 through Linear(1280, 1024), ReLU,
Linear(1024, 512), ReLU, Linear(512, 4), mean cross-entropy, backward, and RMSprop (Keras's
defaults: lr 0.001, rho 0.9, epsilon 1e-7), on 2 threads. Each round times PyTorch (median
ms/step over --steps steps after warm-up) and then `facelab bench train` with the same sizes,
and prints both with their ratio.
"""
import argparse, re, statistics, subprocess, time

import torch

p = argparse.ArgumentParser()
p.add_argument("--facelab", default="target/release/facelab")
p.add_argument("--hidden", type=int, nargs="+", default=[1024, 512])
p.add_argument("--classes", type=int, default=4)
p.add_argument("--batch", type=int, default=16)
p.add_argument("--steps", type=int, default=200)
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--threads", type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)


def torch_ms_per_step():
    torch.manual_seed(1)
    sizes = [1280, *a.hidden, a.classes]
    layers = []
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        layers.append(torch.nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(torch.nn.ReLU())
    head = torch.nn.Sequential(*layers)
    opt = torch.optim.RMSprop(head.parameters(), lr=0.001, alpha=0.9, eps=1e-7)
    x = torch.randn(a.batch, 1280)
    y = torch.arange(a.batch) % a.classes
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for step in range(10 + a.steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(head(x), y)
        loss.backward()
        opt.step()
        if step >= 10:
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def facelab_ms_per_step():
    out = subprocess.run(
        [a.facelab, "bench", "train", "--hidden", *map(str, a.hidden), "--classes",
         str(a.classes), "--batch", str(a.batch), "--steps", str(a.steps)],
        capture_output=True, text=True, check=True).stdout
    return float(re.search(r": ([0-9.]+) ms/step", out).group(1)), out.strip()


print(f"torch {torch.__version__}, {a.threads} threads, head {a.hidden}, batch {a.batch}")
for round_ in range(a.rounds):
    t = torch_ms_per_step()
    f, line = facelab_ms_per_step()
    print(f"round {round_ + 1}: torch {t:.2f} ms/step, facelab {f:.2f} ms/step, ratio {f / t:.2f}")
    print(f"  {line}")
