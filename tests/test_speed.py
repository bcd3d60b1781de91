"""train/speed.py's levers: same values as Brevitas, masks kept in place, one-line refusals, resume, gpu_train on CPU."""
import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from tests.conftest import kill_at_epoch
from tests.test_training import SMALL, load_model, run_train
from train import checkpoint as ckpt
from train.fakequant import mark, pair_max, relu_fake_quant
from train.masks import init_masks, prune_step
from train.model import ModelConfig, build_vgg10
from train.speed import SpeedConfig, bf16_supported

CFG = ModelConfig(4, 4, 4, conv_filters=8, dense_units=16)


@pytest.fixture
def needs_kernels():
    """Tests of the generated kernels themselves: skipped where torch inductor cannot compile (no C++ toolchain)."""
    from train.fakequant import kernels_unavailable

    why = kernels_unavailable()
    if why is not None:
        pytest.skip(f"torch inductor cannot generate CPU kernels here: {why}")


def _model(after_stats: bool):
    torch.manual_seed(0)
    m = init_masks(build_vgg10(CFG)).train()
    if after_stats:  # a loaded state dict ends Brevitas' statistics collection
        torch.nn.functional.cross_entropy(m(torch.randn(2, 2, 1024)), torch.tensor([0, 1])).backward()
        m.zero_grad(set_to_none=True)
        m.load_state_dict(m.state_dict())
    return m


@pytest.mark.parametrize("kernels", [False, True])
@pytest.mark.parametrize("after_stats", [False, True])
def test_fused_quant_relu_gives_brevitas_values_and_gradients(after_stats, kernels, request):
    """Eager ops or generated kernels: Brevitas' values and gradients, bit for bit (the scale's included)."""
    if kernels:
        request.getfixturevalue("needs_kernels")
    a, b = _model(after_stats)[3], _model(after_stats)[3]
    mark(b, kernels=kernels)
    x = (torch.randn(4, 8, 1024) * 2).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    g = torch.randn(4, 8, 1024)
    ya = a(x)
    ya.backward(g)
    yb = relu_fake_quant(b, x2)
    yb.backward(g)
    assert torch.equal(ya, yb) and torch.equal(x.grad, x2.grad)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert (pa.grad is None and pb.grad is None) or torch.equal(pa.grad, pb.grad)


def test_kernel_marked_quant_relu_on_bf16_keeps_the_eager_values(needs_kernels):
    """Under bf16 autocast the QuantReLU sees bf16: eager rounds x / s to bf16 before round(), inductor's kernel
    would not, so a marked layer must give the eager ops' values and gradients there."""
    a, b = _model(True)[3], _model(True)[3]
    mark(a, kernels=False)
    mark(b, kernels=True)
    torch.manual_seed(1)
    x = (torch.randn(4, 8, 1024) * 2).bfloat16().requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    g = torch.randn(4, 8, 1024).bfloat16()
    ya, yb = relu_fake_quant(a, x), relu_fake_quant(b, x2)
    ya.backward(g)
    yb.backward(g)
    assert ya.dtype == torch.bfloat16 and torch.equal(ya, yb) and torch.equal(x.grad, x2.grad)


def test_pair_max_is_maxpool_with_its_gradient_to_the_first_tie():
    x = torch.randint(0, 4, (3, 5, 64)).float().requires_grad_()  # many ties
    x2 = x.detach().clone().requires_grad_()
    g = torch.randn(3, 5, 32)
    nn.MaxPool1d(2)(x).backward(g)
    pair_max(x2).backward(g)
    assert torch.equal(x.grad, x2.grad) and torch.equal(nn.MaxPool1d(2)(x), pair_max(x2))


def test_pruning_keeps_mask_buffers_and_hooks_in_place():
    """A compiled model is not recompiled by a pruning step: the same buffers and hooks, new values."""
    m = _model(False)
    before = {k: v for k, v in m.named_buffers() if k.endswith("_mask")}
    hooks = [dict(mod._forward_pre_hooks) for mod in m.modules()]
    kept = prune_step(m, 0.3, "unstructured") + prune_step(m, 0.3, "filters")
    after = {k: v for k, v in m.named_buffers() if k.endswith("_mask")}
    assert kept > 0 and all(after[k] is v for k, v in before.items())
    assert hooks == [dict(mod._forward_pre_hooks) for mod in m.modules()]
    assert sum(int(v.sum()) for v in after.values()) < sum(v.numel() for v in after.values())


def test_marking_reads_each_quant_relus_grid_before_any_step():
    """The fused forward's hot path holds no host sync: under torch.compile a `float(tensor)` there is a graph
    break per QuantReLU."""
    from train.fakequant import mark

    m = mark(_model(True))
    fused = [mod for mod in m.modules() if getattr(mod, "_fast_relu", False)]
    assert len(fused) >= 7 and all(mod._max_int == 2.0 ** CFG.act_bits - 1 for mod in fused)


@pytest.mark.parametrize("kernels, label", [("false", "fp32, fused"), ("true", "fp32, fused, kernels")])
def test_fused_training_step_keeps_forward_values(kernels, label, request):
    if kernels == "true":
        request.getfixturevalue("needs_kernels")
    from train.speed import Step

    m = _model(True)
    step = Step(m, SpeedConfig(precision="fp32", compile="false", kernels=kernels), torch.device("cpu"))
    x = torch.randn(4, 2, 1024)
    assert torch.equal(step(x), m(x)) and step.label == label


@pytest.mark.parametrize("after_stats", [False, True])  # the statistics phase; past it (max-pool first)
def test_training_with_the_generated_kernels_gives_the_eager_steps_weights(after_stats, needs_kernels):
    """The kernels change speed only: Adam steps through them end on the same weights, bit for bit."""
    from train.speed import Step

    weights = []
    for kernels in ("false", "true"):
        m = _model(after_stats)
        step = Step(m, SpeedConfig(precision="fp32", compile="false", kernels=kernels), torch.device("cpu"))
        opt = torch.optim.Adam(m.parameters(), 1e-3)
        g = torch.Generator().manual_seed(3)
        for _ in range(4):
            opt.zero_grad()
            x, y = torch.randn(8, 2, 1024, generator=g), torch.randint(0, 24, (8,), generator=g)
            torch.nn.functional.cross_entropy(step(x), y).backward()
            opt.step()
        weights.append(m.state_dict())
    a, b = weights
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_auto_kernels_are_on_for_runs_long_enough_to_pay_where_inductor_compiles(monkeypatch):
    from train import speed
    from train.speed import KERNEL_MIN_STEPS, for_run, uses_kernels

    cpu = torch.device("cpu")
    monkeypatch.setattr(speed, "kernels_available", lambda: False)
    assert not uses_kernels(for_run(SpeedConfig(), KERNEL_MIN_STEPS), cpu)
    monkeypatch.setattr(speed, "kernels_available", lambda: True)
    assert uses_kernels(for_run(SpeedConfig(), KERNEL_MIN_STEPS), cpu)
    assert not uses_kernels(for_run(SpeedConfig(), KERNEL_MIN_STEPS - 1), cpu)
    assert uses_kernels(for_run(SpeedConfig(kernels="true"), 1), cpu)
    assert not uses_kernels(SpeedConfig(kernels="auto", compile="true"), cpu)  # a step compiled whole fuses them


def _train(tmp_path, tiny_file, *extra):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    return subprocess.run([sys.executable, "-m", "train", "--data.path", str(tiny_file), "--run_dir",
                           str(tmp_path / "r"), *SMALL, *extra], env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("flags, message", [
    (["--train.precision", "fp16"], "invalid choice: 'fp16'"),
    (["--train.compile", "maybe"], "invalid choice: 'maybe'"),
    (["--train.fused", "perhaps"], "expected true or false"),
    (["--train.kernels", "maybe"], "invalid choice: 'maybe'"),
    (["--train.kernels", "true", "--train.fused", "false"], "--train.kernels true needs --train.fused true"),
    (["--train.kernels", "true", "--train.compile", "true"], "is compiled whole (--train.compile true)"),
    (["--train.resident_gb", "-1"], "train.resident_gb must be >= 0"),
])
def test_bad_speed_flags_fail_in_one_line(tmp_path, tiny_file, flags, message):
    r = _train(tmp_path, tiny_file, *flags)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "r" / "checkpoint.pt").exists()


@pytest.mark.skipif(bf16_supported(torch.device("cpu")), reason="this CPU has bf16")
def test_bf16_on_a_cpu_without_it_fails_before_work_and_auto_falls_back(tmp_path, tiny_file):
    r = _train(tmp_path, tiny_file, "--train.precision", "bf16")
    assert r.returncode == 2 and "no native bf16 arithmetic" in r.stderr and r.stderr.count("\n") == 1
    assert not (tmp_path / "r").exists()
    r = _train(tmp_path, tiny_file, "--train.precision", "auto", "--prune.strategy", "none",
               "--optim.epochs_per_round", "1", "--prune.cost_every_round", "false")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "training step: fp32, fused" in (tmp_path / "r" / "train.log").read_text()


@pytest.mark.parametrize("compiler", ["none on PATH", "$CXX missing"])
def test_kernels_where_inductor_cannot_compile_fail_before_work(tmp_path, tiny_file, compiler):
    """Whatever compiler inductor would call ($CXX, else g++), asked-for kernels that cannot be generated fail in
    one line before work: also where g++ is on PATH but $CXX names a compiler that is not there."""
    env = {"PYTHONPATH": os.getcwd(), "HOME": os.environ.get("HOME", "/"),
           "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor-cache")}  # no kernel compiled before
    env.update({"PATH": str(tmp_path / "no-compilers")} if compiler == "none on PATH"
               else {"PATH": os.environ["PATH"], "CXX": str(tmp_path / "no-such-c++")})
    r = subprocess.run([sys.executable, "-m", "train", "--data.path", str(tiny_file), "--run_dir", str(tmp_path / "r"),
                        *SMALL, "--train.kernels", "true"], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 2 and "cannot generate CPU kernels here" in r.stderr, r.stderr[-3000:]
    assert r.stderr.count("\n") == 1 and not (tmp_path / "r").exists()


def test_cuda_without_a_gpu_fails_before_work(tmp_path, tiny_file):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = _train(tmp_path, tiny_file, "--device", "cuda")
    assert r.returncode == 2 and "no CUDA device" in r.stderr and not (tmp_path / "r").exists()


@pytest.mark.slow
def test_killed_fused_run_after_the_statistics_phase_resumes_to_the_same_weights(tmp_path, tiny_file, needs_kernels):
    """The fast path at its fastest (statistics done, so max-pool runs before the QuantReLU; generated
    kernels), with pruning: a run killed mid-way and resumed ends with the weights of an uninterrupted one."""
    start = tmp_path / "start"
    run_train(tmp_path, start, tiny_file, "--prune.strategy", "none", "--optim.epochs_per_round", "1",
              "--prune.cost_every_round", "false")
    args = ("--init_from", str(start / "model.pt"), "--prune.strategy", "fmp", "--prune.floor", "0",
            "--prune.max_rounds", "3", "--optim.epochs_per_round", "1", "--prune.cost_every_round", "false",
            "--train.fused", "true", "--train.kernels", "true", "--train.resident", "true", "--train.precision", "fp32")
    ref = tmp_path / "ref"
    run_train(tmp_path, ref, tiny_file, *args)
    assert "training step: fp32, fused, kernels" in (ref / "train.log").read_text()
    run = tmp_path / "killed"
    p = run_train(tmp_path, run, tiny_file, *args, wait=False)
    kill_at_epoch(p, run / "checkpoint.pt", 2)
    assert not ckpt.load_checkpoint(run / "checkpoint.pt")["state"]["done"]
    run_train(tmp_path, run, tiny_file, *args)
    a, b = load_model(ref)["model"], load_model(run)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ha = json.loads((ref / "metrics.json").read_text())["history"]
    hb = json.loads((run / "metrics.json").read_text())["history"]
    assert [h["train_loss"] for h in ha] == [h["train_loss"] for h in hb]


def test_gpu_train_script_runs_on_the_cpu(tmp_path, needs_kernels):
    from benchmarks.gpu_train import main

    assert main(["--tiny", "--device", "cpu", "--no-train", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "gpu_train.json").read_text())["rows"]
    assert len(rows) == 12 and all(r["frames_per_s"] > 0 for r in rows)
    fast = "bf16 autocast" if bf16_supported(torch.device("cpu")) else "fp32"  # the auto rule, machine by machine
    assert {r["step"] for r in rows} == {"fp32", "fp32, fused, kernels", f"{fast}, fused, kernels"}


def test_gpu_train_script_stops_in_one_line_where_the_epoch_cost_cannot_run(tmp_path):
    """An image without onnxoptimizer (as a GPU machine's was) fails before any timing, not after an epoch."""
    (tmp_path / "shadow").mkdir()
    (tmp_path / "shadow" / "onnxoptimizer.py").write_text("raise ImportError('onnxoptimizer is not installed')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "shadow"), os.getcwd()])}
    r = subprocess.run([sys.executable, "-m", "benchmarks.gpu_train", "--tiny", "--device", "cpu", "--no-train",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert err[-1].startswith("error: the per-epoch inference cost fails")
    assert "(onnxoptimizer is not installed)" in err[-1]  # the underlying failure, passed on
    assert "frames/s" not in r.stdout and not (tmp_path / "out").exists()
