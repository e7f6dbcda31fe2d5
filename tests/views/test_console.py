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
