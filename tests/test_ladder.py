"""The dense width ladder: every rung trains to its plateau with one recipe and keeps its best epoch's model."""
import json
from pathlib import Path

import pytest

from train.ladder import Recipe, main, run_ladder, width_config

ROOT = Path(__file__).resolve().parents[1]
SANDBOX = ROOT.parent / "shared" / "reference" / "sandbox-vgg10-w8a8" / "pretrained_VGG10_w8a8_20.pth"
needs_sandbox = pytest.mark.skipif(not SANDBOX.is_file(), reason=f"{SANDBOX} not here (the sandbox model)")


def _feedback_accuracy(run_dir: Path, data) -> float:
    from radioml.dataset import RadioMLFile
    from train.config import load_config
    from train.loop import _splits, predict
    from train.saved_model import load_model

    cfg = load_config(run_dir / "config.json")
    model, _, _ = load_model(run_dir)
    with RadioMLFile(data) as ds:
        return predict(model, ds, _splits(ds, cfg).feedback, "cpu")["accuracy"]


@needs_sandbox
def test_each_rung_stops_at_its_plateau_keeps_its_best_model_and_a_rerun_skips_it(tmp_path, tiny_file, capsys):
    recipe = Recipe(max_epochs=6, patience=1, lr=3e-3)
    (run,) = run_ladder(str(tiny_file), tmp_path, [8], recipe, SANDBOX, threads=1)
    m = json.loads((run / "metrics.json").read_text())
    fb = [h["feedback_accuracy"] for h in m["history"]]
    # stopped by the plateau rule or the cap, and by nothing else
    plateau = len(fb) >= 2 and fb[-1] <= max(fb[:-1])
    assert (m["stop_reason"].startswith("plateau") and plateau) or (len(fb) == 6 and "epoch budget" in m["stop_reason"])
    assert m["widths"]["conv"] == [8] * 7 and m["bits"]["label"] == "4/4/4"
    # the shipped model is the best epoch's, not the last one's
    assert _feedback_accuracy(run, tiny_file) == pytest.approx(max(fb), abs=1e-9)
    before = (run / "model.pt").read_bytes()
    run_ladder(str(tiny_file), tmp_path, [8], recipe, SANDBOX, threads=1)
    assert "f8: finished" in capsys.readouterr().out and (run / "model.pt").read_bytes() == before


def test_every_rung_gets_the_same_recipe_but_its_width(tmp_path):
    a, b = (width_config(w, "d.hdf5", tmp_path / f"s{w}.pt", tmp_path / f"f{w}", Recipe(), 1, "cpu").to_dict()
            for w in (16, 64))
    diff = {k for k in a if a[k] != b[k]}
    assert diff == {"model", "init_from", "run_dir"}
    assert a["model"]["conv_filters"] == 16 and a["optim"]["stop_patience"] == Recipe().patience
    assert a["prune"]["strategy"] == "none"


@pytest.mark.parametrize("argv, says", [
    (["--widths", "64,65"], "widths must be distinct filter counts in 1..64"),
    (["--widths", "32,32"], "widths must be distinct"),
])
def test_bad_widths_are_refused_by_the_parser(argv, says, capsys, tmp_path):
    with pytest.raises(SystemExit):
        main(["--data", "x.hdf5", "--out", str(tmp_path / "o"), *argv])
    assert says in capsys.readouterr().err


def test_missing_data_is_one_line_and_writes_nothing(tmp_path, capsys):
    assert main(["--data", str(tmp_path / "none.hdf5"), "--out", str(tmp_path / "o")]) != 0
    assert "none.hdf5: no such file" in capsys.readouterr().err and not (tmp_path / "o").exists()


@needs_sandbox
def test_the_gpu_script_trains_the_ladder_and_a_rerun_resumes_nothing(tmp_path, tiny_file, capsys):
    from benchmarks.gpu_train import main as gpu_main

    args = ["--tiny", "--device", "cpu", "--data", str(tiny_file), "--sandbox", str(SANDBOX), "--out", str(tmp_path)]
    assert gpu_main(args) == 0
    (run,) = json.loads((tmp_path / "gpu_train.json").read_text())["runs"]
    m = json.loads((Path(run["run_dir"]) / "metrics.json").read_text())
    assert run["run_dir"] == str(tmp_path / "ladder" / "f8") and m["epochs"] == run["epochs"] <= 2
    cfg = json.loads((tmp_path / "ladder" / "f8" / "config.json").read_text())
    assert cfg["optim"]["batch_size"] == 8 and cfg["init_from"] == str(tmp_path / "ladder" / "start-f8" / "model.pt")
    capsys.readouterr()
    assert gpu_main(args) == 0 and "f8: finished" in capsys.readouterr().out


def test_the_gpu_script_refuses_a_missing_data_file_before_any_work(tmp_path, capsys):
    from benchmarks.gpu_train import main as gpu_main

    assert gpu_main(["--device", "cpu", "--data", str(tmp_path / "no.hdf5"), "--out", str(tmp_path / "o")]) == 2
    assert "no.hdf5: no such file" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_the_gpu_script_refuses_a_missing_sandbox_model_before_any_work(tmp_path, tiny_file, capsys):
    from benchmarks.gpu_train import main as gpu_main

    args = ["--device", "cpu", "--data", str(tiny_file), "--sandbox", str(tmp_path / "no.pth"),
            "--out", str(tmp_path / "o")]
    assert gpu_main(args) == 2
    assert "--sandbox" in capsys.readouterr().err and not (tmp_path / "o").exists()
