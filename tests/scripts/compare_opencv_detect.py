#!/usr/bin/env python3
"""Compare `facelab detect` with OpenCV's detectMultiScale on photos with one frontal face each.

    python3 -m pip install "opencv-python-headless<5"
    python3 tests/scripts/compare_opencv_detect.py DIR... [--facelab target/release/facelab]

Same cascade file (haarcascade_frontalface_default.xml from cv2's data), same parameters (the
notebook's: scale 1.3, 5 neighbours), grayscale by cv2.cvtColor. Prints how many photos each
finds a face in, how often facelab's box overlaps OpenCV's (IoU >= 0.5), and both speeds on one
thread (median ms per photo).
"""
import argparse, json, os, statistics, subprocess, sys, time

import cv2

p = argparse.ArgumentParser()
p.add_argument("dirs", nargs="+")
p.add_argument("--facelab", default="target/release/facelab")
p.add_argument("--scale", type=float, default=1.3)
p.add_argument("--neighbors", type=int, default=5)
a = p.parse_args()

cascade_path = os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml")
cascade = cv2.CascadeClassifier(cascade_path)
cv2.setNumThreads(1)
exts = (".jpg", ".jpeg", ".png", ".pgm", ".bmp")
paths = sorted(os.path.join(r, f) for d in a.dirs for r, _, fs in os.walk(d) for f in fs if f.lower().endswith(exts))

ours = {}
out = subprocess.run([a.facelab, "detect", "--cascade", cascade_path, "--scale", str(a.scale),
                      "--neighbors", str(a.neighbors), *paths], capture_output=True, text=True, check=True)
for line in out.stdout.splitlines():
    d = json.loads(line)
    ours[d["path"]] = d["faces"]

def iou(r, s):
    x0, y0 = max(r[0], s[0]), max(r[1], s[1])
    x1, y1 = min(r[0] + r[2], s[0] + s[2]), min(r[1] + r[3], s[1] + s[3])
    inter = max(0, x1 - x0) * max(0, y1 - y0)
    return inter / (r[2] * r[3] + s[2] * s[3] - inter)

cv_found = our_found = overlap = both = 0
times = []
for path in paths:
    gray = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2GRAY)
    faces = cascade.detectMultiScale(gray, scaleFactor=a.scale, minNeighbors=a.neighbors)
    for _ in range(3):
        t = time.perf_counter()
        cascade.detectMultiScale(gray, scaleFactor=a.scale, minNeighbors=a.neighbors)
        times.append((time.perf_counter() - t) * 1000)
    cv_faces = [list(map(int, f)) for f in faces]
    mine = ours.get(path, [])
    cv_found += bool(cv_faces)
    our_found += bool(mine)
    if cv_faces and mine:
        both += 1
        overlap += max(iou(r, s) for r in cv_faces for s in mine) >= 0.5

print(f"photos: {len(paths)}")
print(f"OpenCV {cv2.__version__} found a face in {cv_found}; facelab in {our_found}")
print(f"facelab's box overlaps OpenCV's (IoU >= 0.5) in {overlap} of the {cv_found} photos where OpenCV found one ({100 * overlap / max(cv_found, 1):.1f}%)")
print(f"OpenCV detectMultiScale, 1 thread: {statistics.median(times):.2f} ms/photo median")
