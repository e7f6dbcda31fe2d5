"""A Hydra callback for sweeps: at the end of a multirun, say where the runs are, how to compare
them, and which runs did not complete and why (a sweep with such runs exits non-zero); and draw the
sweep's verdict into TensorBoard (`verdict_board`)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from vaebench.report.verdict_board import write_verdict


class SweepSummary(Callback):
    def __init__(self) -> None:
        self.sweep_dir: Path | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        # hydra.sweep.dir holds ${now:...}: read it once, at the start, as the launcher does.
        self.sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = self.sweep_dir or Path(str(config.hydra.sweep.dir)).absolute()
        problems = unfinished_runs(sweep_dir)
        print(f"\nSweep folder: {sweep_dir}")
        print(f"Compare its runs:  vaebench report {sweep_dir}")
        print(f"TensorBoard:       tensorboard --logdir {sweep_dir}")
        if write_verdict(sweep_dir):
            print("                   its IMAGES tab, verdict/: each headline metric of every run, ± SE, side by side")
        if problems:
            print(f"\n{len(problems)} run{'s' if len(problems) > 1 else ''} of this sweep did not complete:", file=sys.stderr)
            for folder, status, why in problems:
                print(f"  {folder}  {status}: {why}", file=sys.stderr)
            sys.exit(1)


def unfinished_runs(sweep_dir: Path) -> list[tuple[Path, str, str]]:
    """(folder, status, why) of each run below `sweep_dir` whose metrics.json does not say completed."""
    problems = []
    for record in sorted(sweep_dir.rglob("metrics.json"), key=lambda p: [int(s) if s.isdigit() else s for s in p.parts]):
        try:
            metrics = json.loads(record.read_text())
        except (OSError, ValueError):
            metrics = {"status": "unreadable"}
        status = metrics.get("status", "unreadable")
        if status != "completed":
            why = metrics.get("error") or metrics.get("message") or "no message recorded"
            problems.append((record.parent, status, " ".join(str(why).split())[:300]))
    return problems
