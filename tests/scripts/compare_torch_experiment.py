#!/usr/bin/env python3
"""Time the seed experiment end to end in PyTorch and in facelab, alternating, in one session.

    python3 -m pip install torch torchvision pillow
    python3 tests/scripts/compare_torch_experiment.py --data DIR --weights FILE \
        [--facelab target/release/facelab] [--rounds 3]

DIR holds train/ and test/ with one folder per person (the seed data); FILE is torchvision's
mobilenet_v2-b0353104.pth. PyTorch does in one new process what experiments/seed.yaml asks,
including its imports: every image squashed to 224x224 and normalised, 4 augmented copies of
each training image (RandomAffine: rotation 45, shifts 0.3; horizontal flip) made at 224x224,
MobileNetV2 features in batches of 32, then a 1280-1024-512-classes head trained for 3 epochs
of 68 steps of 16 with RMSprop (lr 0.001, rho 0.9, epsilon 1e-7), the test set evaluated after
each epoch. facelab runs `facelab bench experiment` on the same data (a new process, cold
cache, then warm). Each round prints both wall times and the ratios.
"""
import argparse, os, re, subprocess, sys, tempfile, time

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--weights", required=True)
p.add_argument("--facelab", default="target/release/facelab")
p.add_argument("--experiment", default="experiments/seed.yaml")
p.add_argument("--rounds", type=int, default=3)
p.add_argument("--pipeline", action="store_true", help=argparse.SUPPRESS)
a = p.parse_args()


def pipeline():
    import torch, torchvision
    from PIL import Image
    from torchvision import transforms as T

    torch.set_num_threads(2)
    torch.manual_seed(42)
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(torch.load(a.weights, map_location="cpu"))
    net.eval()
    norm = T.Compose([T.ToTensor(), T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    augment = T.Compose([T.RandomAffine(45, translate=(0.3, 0.3)), T.RandomHorizontalFlip()])

    def load(split):
        people = sorted(os.listdir(os.path.join(a.data, split)))
        items = []
        for label, person in enumerate(people):
            folder = os.path.join(a.data, split, person)
            for name in sorted(os.listdir(folder)):
                image = Image.open(os.path.join(folder, name)).convert("RGB").resize((224, 224), Image.BILINEAR)
                items.append((image, label))
        return items, len(people)

    def features(images):
        out = []
        with torch.no_grad():
            for i in range(0, len(images), 32):
                x = torch.stack([norm(im) for im in images[i:i + 32]])
                out.append(net.features(x).mean((2, 3)))
        return torch.cat(out)

    train, classes = load("train")
    test, _ = load("test")
    train_images = [im for im, _ in train] + [augment(im) for im, _ in train for _ in range(4)]
    train_labels = [l for _, l in train] + [l for _, l in train for _ in range(4)]
    xt, yt = features(train_images), torch.tensor(train_labels)
    xv, yv = features([im for im, _ in test]), torch.tensor([l for _, l in test])
    head = torch.nn.Sequential(torch.nn.Linear(1280, 1024), torch.nn.ReLU(),
                               torch.nn.Linear(1024, 512), torch.nn.ReLU(),
                               torch.nn.Linear(512, classes))
    opt = torch.optim.RMSprop(head.parameters(), lr=0.001, alpha=0.9, eps=1e-7)
    loss_fn = torch.nn.CrossEntropyLoss()
    order = torch.randperm(len(yt))
    at = 0
    for epoch in range(3):
        for step in range(68):
            if at + 16 > len(order):
                order, at = torch.randperm(len(yt)), 0
            rows = order[at:at + 16]
            at += 16
            opt.zero_grad()
            loss_fn(head(xt[rows]), yt[rows]).backward()
            opt.step()
        with torch.no_grad():
            accuracy = (head(xv).argmax(1) == yv).float().mean().item()
    print(f"test accuracy {accuracy:.4f}")


if a.pipeline:
    pipeline()
    sys.exit(0)

# facelab reads the data through a workspace whose facedata/ is the data folder.
workspace = tempfile.mkdtemp(prefix="facelab-compare-")
os.symlink(os.path.abspath(a.data), os.path.join(workspace, "facedata"))
os.makedirs(os.path.join(workspace, "experiments"))
with open(a.experiment) as src, open(os.path.join(workspace, "experiments", "seed.yaml"), "w") as dst:
    dst.write(src.read())

for round_ in range(a.rounds):
    start = time.perf_counter()
    torch_out = subprocess.run([sys.executable, __file__, "--pipeline", "--data", a.data, "--weights",
                                a.weights], capture_output=True, text=True, check=True).stdout
    torch_s = time.perf_counter() - start
    out = subprocess.run([a.facelab, "--workspace", workspace, "--weights", a.weights, "bench",
                          "experiment", "experiments/seed.yaml"], capture_output=True, text=True,
                         check=True).stdout
    cold, warm = (float(x) for x in re.findall(r"cache\): ([0-9.]+) s wall", out))
    print(f"round {round_ + 1}: torch {torch_s:.2f} s ({torch_out.strip()}), facelab cold {cold:.2f} s "
          f"(ratio {cold / torch_s:.3f}), warm {warm:.2f} s (ratio {warm / torch_s:.3f})")
