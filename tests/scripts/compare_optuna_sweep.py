#!/usr/bin/env python3
"""Time facelab's TPE sweep against Optuna + PyTorch on the same features, alternating, in one
session, twice per round: once against Optuna drawing its own trials, and once against Optuna
running facelab's own draws, so the two do the same work.

    python3 -m pip install optuna torch numpy
    python3 tests/scripts/compare_optuna_sweep.py --workspace DIR --features FEATS \
        [--anchor ../shared/anchors/optuna_sweep.py] [--facelab target/release/facelab] \
        [--sweep experiments/sweeps/anchor.yaml] [--rounds 2] [--seeds 7 ...] [--skip-same]

DIR is a facelab workspace whose facedata/train holds each ORL person's first 5 files by name
(the rest in facedata/test), with features cached (`facelab features`), and whose sweep file
describes the anchor's search (see the README's sweep section). FEATS is `facelab embed` of the
same images, the anchor's input. Each round runs, for each seed (both sides' TPE seed; 7 is
the anchor's own), in turn:
1. the anchor (Optuna's TPE draws its own 40 trials);
2. `facelab sweep` from an empty store (the cached features kept), its sweep file's seed set
   in a copy that is removed afterwards;
3. unless --skip-same, the anchor with facelab's 40 draws queued first (`study.enqueue_trial`),
   its training code untouched, so both train the same heads for the same epochs on the same
   folds.
The TPE draws of two implementations differ (different random streams), and with them the work:
a [1024, 512] head takes 36 times the multiplies of a linear one per step. The first ratio is
the issue's figure as written; the second says how much of it is speed and how much the draw.
"""
import argparse, glob, os, re, shutil, subprocess, sys, tempfile, time

p = argparse.ArgumentParser()
p.add_argument("--workspace", required=True)
p.add_argument("--features", required=True)
p.add_argument("--anchor", default="../shared/anchors/optuna_sweep.py")
p.add_argument("--facelab", default="target/release/facelab")
p.add_argument("--sweep", default="experiments/sweeps/anchor.yaml")
p.add_argument("--rounds", type=int, default=2)
p.add_argument("--seeds", type=int, nargs="*", default=[7],
               help="TPE seeds, each round runs every one on both sides (7 is the anchor's own)")
p.add_argument("--skip-same", action="store_true", help="skip step 3 (Optuna on facelab's draws)")
a = p.parse_args()
facelab = os.path.abspath(a.facelab)
features = os.path.abspath(a.features)
anchor_source = open(a.anchor).read()
OPTIMIZE = "study.optimize(objective, n_trials=n_trials)"
ANCHOR_SEED = "TPESampler(seed=7)"
# One line per trial on stderr, to count the anchor's own large-head work.
RETURN = "    return float(np.mean(accs))"
TRACE = "    print('TRIAL', hidden, epochs, file=sys.stderr)\n"
for needed in (OPTIMIZE, ANCHOR_SEED, RETURN):
    assert needed in anchor_source, f"the anchor has changed: no {needed!r}"
HIDDEN = {"[]": 0, "[256]": 1, "[1024,512]": 2}
TRIAL = re.compile(r"trial\s+\d+\s+finished.*?head\.hidden=(\S+) head\.l2_normalize=(\S+) "
                   r"train\.epochs=(\d+) train\.optimizer\.lr=(\S+)")


def timed(command, **kwargs):
    start = time.time()
    out = subprocess.run(command, capture_output=True, text=True, **kwargs)
    if out.returncode != 0:
        sys.exit(f"{command[:2]} failed:\n{out.stdout}\n{out.stderr}")
    return time.time() - start, out


def run_anchor(seed, enqueued=None):
    source = anchor_source.replace(ANCHOR_SEED, f"TPESampler(seed={seed})")
    source = source.replace(RETURN, TRACE + RETURN)
    if enqueued is not None:
        queue = "".join(f"study.enqueue_trial({t!r}); " for t in enqueued)
        source = source.replace(OPTIMIZE, queue + OPTIMIZE)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    try:
        seconds, out = timed([sys.executable, f.name, features, "5", "--trials", "40"])
    finally:
        os.unlink(f.name)
    trials = [{"hidden": HIDDEN[hidden.replace(" ", "")], "epochs": int(epochs)}
              for hidden, epochs in re.findall(r"^TRIAL (\[.*?\]) (\d+)$", out.stderr, re.M)]
    return seconds, f"{work(trials)}; {out.stdout.strip().splitlines()[-1]}"


def run_facelab(seed):
    for path in glob.glob(os.path.join(a.workspace, "facelab.db*")):
        os.unlink(path)
    for run in glob.glob(os.path.join(a.workspace, "models", "*")):
        if os.path.basename(run) != "cache" and os.path.isdir(run):
            shutil.rmtree(run)
    sweep = open(os.path.join(a.workspace, a.sweep)).read()
    assert re.search(r"^seed: \d+$", sweep, re.M), f"{a.sweep} has no seed line"
    seeded = os.path.join(os.path.dirname(a.sweep), f"anchor_seed{seed}.yaml")
    with open(os.path.join(a.workspace, seeded), "w") as f:
        f.write(re.sub(r"^seed: \d+$", f"seed: {seed}", sweep, flags=re.M))
    try:
        seconds, out = timed([facelab, "sweep", seeded], cwd=a.workspace)
    finally:
        os.unlink(os.path.join(a.workspace, seeded))
    trials = [{"lr": float(lr), "hidden": HIDDEN[hidden], "epochs": int(epochs), "l2": l2 == "true"}
              for hidden, l2, epochs, lr in TRIAL.findall(out.stdout)]
    if len(trials) != 40:
        sys.exit(f"expected 40 finished trials in facelab's output, found {len(trials)}")
    return seconds, trials


def work(trials):
    big = [t for t in trials if t["hidden"] == 2]
    return f"{len(big)} [1024, 512] trials, {sum(t['epochs'] for t in big)} of their epochs"


totals = {"optuna_own": 0.0, "facelab": 0.0, "optuna_same": 0.0}
for round in range(1, a.rounds + 1):
    for seed in a.seeds:
        at = f"round {round}, seed {seed}:"
        optuna_own, line = run_anchor(seed)
        print(f"{at} optuna, its own draws:   {optuna_own:6.1f} s  ({line})", flush=True)
        ours, trials = run_facelab(seed)
        print(f"{at} facelab sweep:           {ours:6.1f} s  ({work(trials)})", flush=True)
        print(f"{at} ratio to optuna's own draws {ours / optuna_own:.2f}", flush=True)
        totals["optuna_own"] += optuna_own
        totals["facelab"] += ours
        if a.skip_same:
            continue
        optuna_same, line = run_anchor(seed, trials)
        print(f"{at} optuna, facelab's draws: {optuna_same:6.1f} s  ({line})", flush=True)
        print(f"{at} ratio to the same draws {ours / optuna_same:.2f}", flush=True)
        totals["optuna_same"] += optuna_same
if a.rounds * len(a.seeds) > 1:
    print(f"in all: optuna {totals['optuna_own']:.1f} s, facelab {totals['facelab']:.1f} s: "
          f"ratio {totals['facelab'] / totals['optuna_own']:.2f}")
    if not a.skip_same:
        print(f"in all: optuna on facelab's draws {totals['optuna_same']:.1f} s: "
              f"ratio {totals['facelab'] / totals['optuna_same']:.2f}")
