"""`vaebench train | eval | report`: a thin dispatcher; the work happens in the modules it names."""

from __future__ import annotations

import os
import sys

USAGE = """\
usage: vaebench COMMAND [ARGS...]

Train variational autoencoders and see what the prior and beta do to every term of the ELBO.

commands:
  train [OVERRIDES...]        train one VAE; `train -m a=1,2 b=x,y` sweeps (Hydra multirun).
                              `vaebench train --help` lists the config groups and options.
  eval RUN_DIR [OVERRIDES...] ELBO surgery, total correlation, active units and importance-weighted
                              log p(x) for a trained run (eval.split=test, checkpoint=best|last).
  sample RUN_DIR [OPTIONS...] a run's pictures for a paper (samples, reconstructions, interpolations,
                              traversals, pseudo-inputs) as PNG and .npz in RUN_DIR/samples/.
  report SWEEP_DIR            a table, report.csv, report.md, report.tex and plots for a sweep's runs.

examples:
  vaebench train
  vaebench train prior=vamp beta=4
  vaebench train -m beta=1,2,4,8 prior=vamp prior.K=50,500
  tensorboard --logdir outputs
"""


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return
    command, rest = argv[0], argv[1:]
    # A component of the user's own (`_target_: my_priors.LaplacePrior`) may live in the folder vaebench
    # runs from, as with `python -m`; installed packages come first, so it cannot shadow them.
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    if command == "train" and any(flag in rest for flag in ("--help", "-h")):
        from vaebench.config.help import train_help
        from vaebench.config.saved import config_dir

        print(train_help(config_dir()))  # read from conf/ alone: no Hydra, no torch
        return
    if command == "train":
        from vaebench.config.command_line import validate_choices
        from vaebench.config.saved import config_dir
        from vaebench.errors import UserError

        # A mistyped group option or key is refused before torch is imported: in a fraction of a second.
        _run_user_command(lambda: validate_choices(rest, config_dir()), UserError)
        from vaebench.run import train

        sys.argv = ["vaebench train", *rest]
        train.main()
    elif command == "eval":
        from vaebench.errors import UserError
        from vaebench.run.evaluate import evaluate_run

        _run_user_command(lambda: evaluate_run(rest), UserError)
    elif command == "report":
        from vaebench.errors import UserError
        from vaebench.report.command import report

        _run_user_command(lambda: report(rest), UserError)
    elif command == "sample":
        from vaebench.errors import UserError
        from vaebench.run.sample import sample_run

        _run_user_command(lambda: sample_run(rest), UserError)
    else:
        print(f"vaebench: unknown command {command!r}; choose one of train, eval, sample, report.\n", file=sys.stderr)
        print(USAGE, file=sys.stderr)
        sys.exit(2)


def _run_user_command(action, user_error) -> None:
    try:
        action()
    except user_error as err:
        print(f"vaebench: {err}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
