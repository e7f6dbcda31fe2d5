"""trainer.compile=true trains uncompiled, with one line on stderr, when torch.compile fails: at
torch.compile() or, since compilation is lazy, at the first step (e.g. no working C++ compiler)."""

import pytest
import torch

from vaebench.run.compiled import CompiledOrEager


def _fails_at_compile(fn, **options):
    raise RuntimeError("torch.compile is not supported on this platform")


def _fails_at_first_call(fn, **options):
    def compiled(*args):
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\n\nSet TORCHDYNAMO_VERBOSE=1 for more")
    return compiled


@pytest.mark.parametrize("broken_compile", [_fails_at_compile, _fails_at_first_call])
def test_a_failing_torch_compile_falls_back_to_eager_with_one_line(monkeypatch, capsys, broken_compile):
    monkeypatch.setattr(torch, "compile", broken_compile)
    step = CompiledOrEager(lambda x: 2 * x)
    assert [float(step(torch.tensor(v))) for v in (1.0, 2.0)] == [2.0, 4.0]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "training uncompiled" in err
    assert "not supported" in err or "No working C++ compiler" in err


def test_an_error_of_the_step_itself_still_raises(monkeypatch):
    monkeypatch.setattr(torch, "compile", _fails_at_first_call)

    def step(x):
        raise ValueError("a bug in the model")

    with pytest.raises(ValueError, match="a bug in the model"):
        CompiledOrEager(step)(torch.ones(1))
