#!/usr/bin/env python3
"""Decode the seed photos named in ../shared/reference/dlib_face/reference.json with PIL
(libjpeg, as dlib's Python build reads them through face_recognition) and save each as a PNG in
OUT_DIR, named by its path with / as _ (used by tests/dlib_face.rs to compare landmarks on the
exact pixels dlib saw).

    python3 tests/scripts/decode_with_pil.py OUT_DIR
"""
import json, os, sys

from PIL import Image

here = os.path.dirname(os.path.abspath(__file__))
shared = os.path.join(here, "../../../shared")
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
reference = json.load(open(os.path.join(shared, "reference/dlib_face/reference.json")))
for face in reference["faces"]:
    image = Image.open(os.path.join(shared, "facedata", face["image"])).convert("RGB")
    image.save(os.path.join(out, face["image"].replace("/", "_") + ".png"))
