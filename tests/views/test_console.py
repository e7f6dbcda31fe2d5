"""The progress of a long evaluation: point by point on a terminal, a line now and then in a log file,
the time left counted from what this estimate did."""

import torch


def test_the_log_likelihood_reports_its_progress_point_by_point_and_a_slow_one_is_shown(caplog):
    from vaebench.views.console import EvaluationProgress
    from vaebench.metrics.likelihood import importance_sampling_terms

    x = torch.zeros(10, 3)
    heard = []
    importance_sampling_terms(lambda block, s: torch.zeros(s, len(block)), x, samples=4, max_rows=8, on_points=heard.append)
    assert heard == [0, 2, 2, 2, 2, 2]  # the start, then 8 pairs a call: 2 points of 4 samples

    progress = EvaluationProgress(10, "test log p(x)", quiet_s=0.0, every_s=0.0)
    progress.tty = False  # as in a log file or a cluster's output
    with caplog.at_level("INFO", logger="vaebench"), progress:
        importance_sampling_terms(lambda block, s: torch.zeros(s, len(block)), x, samples=4, max_rows=8,
                                  on_points=progress.update)
    lines = [r.getMessage() for r in caplog.records if r.name == "vaebench"]
    assert lines[0].startswith("test log p(x): 2/10 points, about") and len(lines) == 4  # none once all are done


def test_the_time_left_counts_only_the_points_this_estimate_did_since_it_began(caplog):
    from vaebench.views.console import EvaluationProgress

    now = [0.0]
    progress = EvaluationProgress(100, "test log p(x)", quiet_s=0.0, every_s=0.0, done=40)
    progress.tty, progress.clock = False, lambda: now[0]
    now[0] = 1000.0  # the surgery before the log-likelihood took 1,000 s
    with caplog.at_level("INFO", logger="vaebench"):
        progress.update(0)  # the first block begins
        now[0] += 10.0
        progress.update(10)  # 10 points in 10 s; 50 are left
    (line,) = [r.getMessage() for r in caplog.records if r.name == "vaebench"]
    assert line == "test log p(x): 50/100 points, about 50 s left"


def test_every_long_stage_of_a_split_evaluation_tells_its_progress_to_its_end():
    """The ELBO terms (points), the surgery's q(z) and log p(z), TC's and the dimension-wise KL's 1-D
    marginals (samples): each stage heard from 0 to its total, in the order they run."""
    from tests.priors.test_priors import aggregate_prior
    from vaebench.metrics.diagnostics import split_report

    model, x = aggregate_prior(n=200, seed=3)
    heard: dict[str, list[tuple[int, int]]] = {}
    split_report(model, x, batch_size=64, iw_samples=0, surgery_samples=4,
                 progress=lambda stage, done, total: heard.setdefault(stage, []).append((done, total)))
    assert list(heard) == ["ELBO terms", "surgery: log p(z)", "surgery: q(z) of 200 points",
                           "TC: q(z_j) in each dimension", "dimension-wise KL: p(z_j) in each dimension"]
    assert heard["ELBO terms"] == [(0, 200), (64, 200), (128, 200), (192, 200), (200, 200)]
    for stage, calls in heard.items():
        done = [d for d, _ in calls]
        assert done[0] == 0 and done == sorted(done) and done[-1] == calls[0][1], stage
        assert calls[0][1] == (200 if stage == "ELBO terms" else 4 * 200), stage  # points, or 4 draws of each


def test_each_stage_of_an_evaluation_gets_its_own_lines_with_the_time_left_and_a_slow_one_its_duration(caplog):
    from vaebench.views.console import StagedProgress

    now = [0.0]

    def clocked(progress):
        progress.tty, progress.clock, progress.quiet_s, progress.every_s = False, lambda: now[0], 0.0, 0.0
        progress.started = progress.last_line = now[0]

    stages = StagedProgress("train (1/3) ")
    with caplog.at_level("INFO", logger="vaebench"), stages:
        for stage, total, seconds in (("ELBO terms", 100, 1.0), ("surgery: q(z) of 100 points", 400, 30.0)):
            stages(stage, 0, total)
            clocked(stages.current)
            for done in (total // 4, total):
                now[0] += seconds / 4 if done < total else 3 * seconds / 4
                stages(stage, done, total)
    lines = [r.getMessage() for r in caplog.records if r.name == "vaebench"]
    assert lines == ["train (1/3) ELBO terms: 25/100, about 1 s left",
                     "train (1/3) surgery: q(z) of 100 points: 100/400, about 22 s left",
                     "train (1/3) surgery: q(z) of 100 points: done in 30 s"]
