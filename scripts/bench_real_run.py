"""A real run's training rate: `vaebench train` on a full-size dataset, epoch by epoch, beside
bench_train.py's figure for the same model, in one run.

    python scripts/bench_real_run.py                              # mlp-standard, 6 epochs: about 3 minutes on a quiet 2-core CPU
    python scripts/bench_real_run.py --epochs 20 --rounds 10
    python scripts/bench_real_run.py --model mlp-vamp
    python scripts/bench_real_run.py --data synthetic             # the 50,000-image npz even where MNIST is present
    OMP_WAIT_POLICY=PASSIVE python scripts/bench_real_run.py     # everything with torch's threads waiting passively
    python scripts/bench_real_run.py --env OMP_NUM_THREADS=1      # the real run only with an environment variable set

Three parts, each printed with its spread:

1. The real run: `vaebench train +experiment=<the model's experiment>` in a subprocess, exactly as a
   user types it (per-epoch evaluation, TensorBoard, checkpoints), on full MNIST from
   `../shared/data` when it is there (`--root`), otherwise on a synthetic npz of 70,000 MNIST-like
   images (50,000 train / 10,000 val / 10,000 test). Each epoch's `train/samples_per_s`, the
   trainer's own figure, is recorded by a hook around `Trainer._end_epoch` that also reads what
   does not depend on load: page faults, context switches and, from /proc, how long the process's
   threads ran and how long they sat runnable on the run queue while something else had the CPU.
   The final evaluation is cut to one importance sample (it is not timed).
2. bench_train.py's figure for the same model (synthetic 5,000 images, 50-step epochs), half of
   its rounds before the real run and half after, so that it sees the same machine.
3. Interleaved, in one process (`--interleave N` cycles, 0 to skip): one epoch of the trainer on the
   full training set, one epoch of bench_train's plain PyTorch loop on the same tensor, a matrix
   product; so a machine that slows down slows all three alike.

"wait" is the share of the threads' time spent runnable but not running (another process had the
core): on a 2-core machine with two torch threads, any other busy process shows here.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

EXPERIMENTS = {
    "mlp-standard": "vae_standard_mnist",
    "mlp-vamp": "vampprior_mnist",
    "hvae-vamp": "hvae_vampprior_mnist",
}
SHARED_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # ../shared/data of the checkout


# -- counters that do not depend on load ------------------------------------------------------------
def counters() -> dict:
    """This process's clocks and counters now: wall and CPU seconds, page faults, context switches,
    and its threads' run and run-queue wait time (/proc/self/task/*/schedstat, nanoseconds)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    run = wait = 0
    try:
        for task in os.listdir("/proc/self/task"):
            try:
                with open(f"/proc/self/task/{task}/schedstat") as f:
                    r, w, _ = f.read().split()
                run, wait = run + int(r), wait + int(w)
            except (OSError, ValueError):  # a thread that just ended
                pass
    except OSError:  # not Linux
        pass
    return {"wall": time.perf_counter(), "cpu": ru.ru_utime + ru.ru_stime, "minflt": ru.ru_minflt,
            "majflt": ru.ru_majflt, "nvcsw": ru.ru_nvcsw, "nivcsw": ru.ru_nivcsw, "run_ns": run, "wait_ns": wait,
            "load": os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")}


def delta(before: dict, after: dict) -> dict:
    d = {k: after[k] - before[k] for k in before if k != "load"}
    d["load"] = after["load"]
    d["wait_share"] = d["wait_ns"] / max(d["run_ns"] + d["wait_ns"], 1)
    return d


# -- the child: `vaebench train` with a recording hook ---------------------------------------------
def child(record_path: str, argv: list[str]) -> None:
    """`vaebench <argv>` as the CLI runs it, with Trainer._end_epoch wrapped to write one JSON line per
    epoch: the trainer's own samples/s and the counters over the epoch's training and its evaluation."""
    from vaebench import cli
    from vaebench.run.trainer import Trainer

    out = open(record_path, "a", buffering=1)
    mark = {}
    fit, end_epoch = Trainer.fit, Trainer._end_epoch

    def hooked_fit(self):
        mark["start"] = counters()
        return fit(self)

    def hooked_end_epoch(self, steps_per_epoch, n, seconds, samples=None):
        trained = counters()
        end_epoch(self, steps_per_epoch, n, seconds, samples)
        done = counters()
        samples = n if samples is None else samples
        out.write(json.dumps({"epoch": self.progress.epoch, "samples_per_s": samples / max(seconds, 1e-9),
                              "train": delta(mark["start"], trained), "eval": delta(trained, done)}) + "\n")
        mark["start"] = counters()

    Trainer.fit, Trainer._end_epoch = hooked_fit, hooked_end_epoch
    cli.main(argv)


# -- data -----------------------------------------------------------------------------------------
def synthetic_npz(path: Path, n: int = 70_000, seed: int = 0) -> None:
    """MNIST-like grey images: a few thick strokes inside the central 20 x 20 pixels, zero borders,
    grey levels k/255, 11% of the pixels non-zero (MNIST: 19%); as in MNIST, border pixels are
    always zero, so the model learns to push their logits far down as on the real data."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28].astype(np.float32)
    x = np.zeros((n, 28, 28), dtype=np.uint8)
    chunk = 5_000
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        image = np.zeros((m, 28, 28), dtype=np.float32)
        for _ in range(3):  # three strokes per image: segments between random points, 1.5 px wide
            p0, p1 = rng.uniform(6, 22, (2, m, 2)).astype(np.float32)
            d = p1 - p0
            t = np.clip(((xx[None] - p0[:, 0, None, None]) * d[:, 0, None, None]
                         + (yy[None] - p0[:, 1, None, None]) * d[:, 1, None, None])
                        / np.maximum((d ** 2).sum(1), 1e-3)[:, None, None], 0, 1)
            dist2 = ((xx[None] - p0[:, 0, None, None] - t * d[:, 0, None, None]) ** 2
                     + (yy[None] - p0[:, 1, None, None] - t * d[:, 1, None, None]) ** 2)
            image = np.maximum(image, np.clip(1.6 - np.sqrt(dist2), 0, 1))
        image[:, :4], image[:, -4:], image[:, :, :4], image[:, :, -4:] = 0, 0, 0, 0
        x[start:start + m] = np.round(image * 255).astype(np.uint8)
    np.savez(path, x=x)


def dataset_overrides(args, workdir: Path) -> tuple[list[str], str]:
    root = Path(args.root) if args.root else SHARED_ROOT
    if args.data in ("auto", "mnist") and (root / "MNIST" / "raw").is_dir():
        return ["dataset=mnist", f"dataset.root={root.resolve()}"], f"full MNIST from {root}"
    if args.data == "mnist":
        sys.exit(f"--data mnist: no MNIST/raw under {root}; pass --root <folder holding MNIST/raw>")
    path = workdir / "synthetic.npz"
    synthetic_npz(path)
    return (["dataset=npz", f"dataset.path={path}", "dataset.val_size=10000", "dataset.test_size=10000"],
            "synthetic MNIST-like npz, 70,000 images (50,000 train)")


# -- the three parts ------------------------------------------------------------------------------
def real_run(args, workdir: Path, data: list[str], env_extra: dict) -> list[dict]:
    record = workdir / "epochs.jsonl"
    overrides = [f"+experiment={EXPERIMENTS[args.model]}", *data, f"trainer.epochs={args.epochs}",
                 f"trainer.device={args.device}", "eval.iw_samples=1", "eval.surgery_samples=1",
                 f"hydra.run.dir={workdir / 'run'}", *args.overrides]
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(record), "--", "train", *overrides]
    print("real run: vaebench train " + " ".join(overrides) +
          "".join(f"  [{k}={v}]" for k, v in env_extra.items()), flush=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **env_extra}
    with open(workdir / "run.log", "w") as log:
        proc = subprocess.run(command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        print((workdir / "run.log").read_text()[-4000:], file=sys.stderr)
        sys.exit(f"the real run failed (exit {proc.returncode})")
    return [json.loads(line) for line in record.read_text().splitlines()]


def bench_train_rates(name: str, rounds: int, device, run_dir: Path) -> list[float]:
    """bench_train.py's vaebench rate for the model, one value per round (its own data and steps)."""
    import torch

    import bench_train
    from vaebench.datasets import Dataset

    torch.manual_seed(0)
    steps = 50
    train = torch.randint(0, 256, (steps * bench_train.BATCH, *bench_train.IMAGE), device=device) / 255
    train.view(-1)[:2] = torch.tensor([0.0, 1.0])
    held_out = torch.rand(bench_train.BATCH, *bench_train.IMAGE, device=device).bernoulli()
    data = Dataset("synthetic", train, held_out, held_out, dynamic_binarize=True)
    args = argparse.Namespace(steps=steps, rounds=rounds, compile=False, precision="fp32")
    return bench_train.bench_model(name, data, args, run_dir, device)["rounds"]["vaebench"]


def interleaved(name: str, cycles: int, data_overrides: list[str], device, run_dir: Path) -> dict:
    """Epoch by epoch in this process: the trainer's epoch (no evaluation), the plain loop's epoch on the
    same training tensor, a matrix product. Returns per-contender lists of (samples/s, counters)."""
    import bench_train
    from benchutil import matmul_gflops, synchronize
    from vaebench.config.components import build_dataset

    cfg = bench_train.vaebench_config([*bench_train.MODELS[name], *[o for o in data_overrides]])
    data = build_dataset(cfg.dataset, int(cfg.seed)).to(device)
    n = len(data.train)
    steps = n // bench_train.BATCH
    results = {"vaebench": [], "plain": [], "matmul": []}
    contenders = {}
    for c in range(cycles):
        if c % 2 == 0:  # fresh instances every two cycles, as bench_train does
            contenders = {"vaebench": bench_train.vaebench_trainer(bench_train.MODELS[name], data, False, run_dir)[0],
                          "plain": bench_train.plain_loop(name, data.train, steps)[0]}
            for epoch in contenders.values():
                epoch()  # warm-up epoch, untimed
        for who in (list(contenders) if c % 2 == 0 else list(contenders)[::-1]):
            synchronize(device)
            before = counters()
            contenders[who]()
            synchronize(device)
            d = delta(before, counters())
            results[who].append((steps * bench_train.BATCH / d["wall"], d))
        before = counters()
        gflops = matmul_gflops(device, seconds=0.3)
        results["matmul"].append((gflops, delta(before, counters())))
        print(f"  interleaved cycle {c + 1}/{cycles}: " + ", ".join(
            f"{who} {results[who][-1][0]:,.0f}" for who in ("vaebench", "plain")) + f", matmul {gflops:.0f} GFLOP/s",
            flush=True)
    return results


def spread(values: list[float], fmt: str = ",.0f") -> str:
    return (f"median {statistics.median(values):{fmt}}, min {min(values):{fmt}}, max {max(values):{fmt}} "
            f"(n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mlp-standard", choices=list(EXPERIMENTS))
    parser.add_argument("--epochs", type=int, default=6, help="epochs of the real run (default: 6)")
    parser.add_argument("--rounds", type=int, default=6, help="bench_train.py rounds, half before and half after the real run (default: 6)")
    parser.add_argument("--interleave", type=int, default=2, help="cycles of the interleaved part; 0 skips it (default: 2)")
    parser.add_argument("--data", default="auto", choices=["auto", "mnist", "synthetic"],
                        help="auto: full MNIST when --root holds MNIST/raw, else the synthetic npz")
    parser.add_argument("--root", default=None, help="a folder holding MNIST/raw (default: ../shared/data of the checkout)")
    parser.add_argument("--device", default="cpu", help="cpu | cuda (default: cpu)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                        help="an environment variable for the real run only (repeatable)")
    parser.add_argument("--keep", default=None, help="keep the run folder and records here")
    parser.add_argument("overrides", nargs="*", help="more overrides for the real run, e.g. trainer.eval_every=1000")
    if "--child" in sys.argv:  # internal: the real run's process
        i = sys.argv.index("--child")
        child(sys.argv[i + 1], sys.argv[sys.argv.index("--") + 1:])
        return
    args = parser.parse_args()
    env_extra = dict(e.split("=", 1) for e in args.env)

    from benchutil import describe, matmul_gflops, pick_device

    device = pick_device(args.device)
    workdir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench_real_run_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        data, what = dataset_overrides(args, workdir)
        print(f"Device: {describe(device)}; model {args.model}; data: {what}; load average {os.getloadavg()[0]:.1f}.",
              flush=True)
        matmul_before = matmul_gflops(device, seconds=0.5)
        half = max(args.rounds // 2, 1)
        bench = bench_train_rates(args.model, half, device, workdir / "bench_train")
        epochs = real_run(args, workdir, data, env_extra)
        bench += bench_train_rates(args.model, max(args.rounds - half, 1), device, workdir / "bench_train")
        matmul_after = matmul_gflops(device, seconds=0.5)
        inter = interleaved(args.model, args.interleave, data, device, workdir / "interleaved") if args.interleave else None
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    rates = [e["samples_per_s"] for e in epochs]
    ref = statistics.median(bench)
    print(f"\n## {args.model}: the real run against bench_train.py\n")
    print("| epoch | samples/s | / bench_train median | threads' run-queue wait | CPU s / wall s | minor faults | "
          "invol. switches | load | eval s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for e in epochs:
        t = e["train"]
        print(f"| {e['epoch']} | {e['samples_per_s']:,.0f} | {e['samples_per_s'] / ref:.2f} | {100 * t['wait_share']:.0f}% | "
              f"{t['cpu'] / t['wall']:.2f} | {t['minflt']:,} | {t['nivcsw']:,} | {t['load']:.1f} | {e['eval']['wall']:.1f} |")
    print(f"\nreal run ({len(epochs)} epochs of {what}): samples/s {spread(rates)}")
    print(f"bench_train.py ({len(bench)} rounds of 50 steps, synthetic 5,000 images): samples/s {spread(bench)}")
    print(f"real / bench_train: median {statistics.median(rates) / ref:.3f}, slowest epoch {min(rates) / ref:.3f} "
          f"(targets: >= 0.90 and >= 0.80)")
    print(f"matmul: {matmul_before:.0f} GFLOP/s before, {matmul_after:.0f} after (2048 x 2048 float32)")
    if inter:
        print(f"\n## Interleaved in one process, {args.interleave} cycles, full training set, no evaluation\n")
        print("| contender | samples/s (median, min, max) | run-queue wait (median) | CPU s / wall s (median) | minor faults per epoch (median) |")
        print("|---|---:|---:|---:|---:|")
        for who in ("vaebench", "plain"):
            rs, ds = [r for r, _ in inter[who]], [d for _, d in inter[who]]
            print(f"| {who} | {statistics.median(rs):,.0f} ({min(rs):,.0f}-{max(rs):,.0f}) | "
                  f"{100 * statistics.median(d['wait_share'] for d in ds):.0f}% | "
                  f"{statistics.median(d['cpu'] / d['wall'] for d in ds):.2f} | {statistics.median(d['minflt'] for d in ds):,.0f} |")
        ratios = [p[0] and v[0] / p[0] for v, p in zip(inter["vaebench"], inter["plain"])]
        gf = [g for g, _ in inter["matmul"]]
        print(f"\nvaebench / plain per cycle: {', '.join(f'{r:.3f}' for r in ratios)}; matmul GFLOP/s per cycle: "
              f"{', '.join(f'{g:.0f}' for g in gf)}")


if __name__ == "__main__":
    main()
