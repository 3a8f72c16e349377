#!/usr/bin/env python3
"""Time dlib's own face-recognition ResNet beside `facelab bench backbone --backbone dlib_resnet`,
alternating, on 150x150 chips.

    python3 -m pip install dlib-bin numpy pillow
    python3 tests/scripts/compare_dlib_descriptor.py [--facelab target/release/facelab] [--rounds 2]

dlib's side: `face_recognition_model_v1.compute_face_descriptor` on dlib's aligned reference
chips (../shared/reference/dlib_face), one chip per call (batch 1) and 32 chips per call
(batch 32), the median ms per chip over several calls; the model is the file facelab fetched
into its per-user cache (~/.cache/facelab). Prints both sides' lines per round and the ratios.
"""
import argparse, glob, os, re, statistics, subprocess, time

import dlib
import numpy as np
from PIL import Image

p = argparse.ArgumentParser()
p.add_argument("--facelab", default="target/release/facelab")
p.add_argument("--rounds", type=int, default=2)
p.add_argument("--model", default=os.path.expanduser("~/.cache/facelab/dlib_face_recognition_resnet_model_v1.dat"))
a = p.parse_args()

here = os.path.dirname(os.path.abspath(__file__))
chips_dir = os.path.join(here, "../../../shared/reference/dlib_face")
chips = [np.array(Image.open(f).convert("RGB")) for f in sorted(glob.glob(os.path.join(chips_dir, "*_chip.png")))]
net = dlib.face_recognition_model_v1(a.model)


def dlib_ms(batch, calls):
    batch_chips = (chips * (batch // len(chips) + 1))[:batch]
    net.compute_face_descriptor(batch_chips[0])  # warm-up
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        if batch == 1:
            net.compute_face_descriptor(batch_chips[0])
        else:
            net.compute_face_descriptor(batch_chips)
        times.append((time.perf_counter() - start) * 1000 / batch)
    return statistics.median(times)


def facelab_ms():
    out = subprocess.run([a.facelab, "bench", "backbone", "--backbone", "dlib_resnet", "--batch", "1", "32",
                          "--runs", "20"], capture_output=True, text=True, check=True).stdout
    return {int(b): float(ms) for b, ms in re.findall(r"batch=(\d+): ([\d.]+) ms/chip", out)}, out.strip()


for r in range(a.rounds):
    theirs = {1: dlib_ms(1, 20), 32: dlib_ms(32, 3)}
    ours, line = facelab_ms()
    print(f"round {r + 1}: dlib {theirs[1]:.1f} ms/chip at batch 1, {theirs[32]:.1f} at batch 32")
    print(line)
    for b in (1, 32):
        print(f"  batch {b}: facelab / dlib = {ours[b] / theirs[b]:.3f}")
