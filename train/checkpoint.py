"""Checkpoints and in-memory snapshots of a training run, written atomically.

A checkpoint is one file holding everything a resumed run needs to continue
bit for bit: model (with pruning masks), optimizer, LR scheduler, pruning
scheduler, RNG state, history, and the last model that met the accuracy floor.
It contains only tensors and plain containers, so it loads with
torch.load(weights_only=True).

Brevitas keeps two things outside the state dict: the step counter of its
activation-scale statistics collection and the running statistics buffer.
Loading a state dict ends that collection early, so a run resumed during its
first steps would diverge; `quant_state` saves both and `restore` puts them back.
"""
from __future__ import annotations

import contextlib
import copy
from pathlib import Path

import torch
from torch import nn

from radioml.atomic import atomic_path
from radioml.cli import first_line

FORMAT = "amc-fmp-checkpoint/1"


def quant_state(model: nn.Module) -> dict:
    """Brevitas statistics-collection state outside the state dict, by module name."""
    out = {}
    for name, mod in model.named_modules():
        if hasattr(mod, "collect_stats_steps") and hasattr(mod, "counter"):
            entry = {"counter": int(mod.counter)}
            if isinstance(getattr(mod, "buffer", None), torch.Tensor):
                entry["buffer"] = mod.buffer.detach().clone()
            if isinstance(getattr(mod, "value", None), torch.Tensor):
                entry["value"] = mod.value.detach().clone()
            out[name] = entry
    return out


def restore_quant_state(model: nn.Module, state: dict) -> None:
    mods = dict(model.named_modules())
    for name, entry in state.items():
        mod = mods[name]
        mod.counter = entry["counter"]
        with torch.no_grad():
            if "buffer" in entry:
                mod.buffer.copy_(entry["buffer"])
            if "value" in entry:
                mod.value.copy_(entry["value"])


def snapshot(model: nn.Module, optimizer, lr_scheduler) -> dict:
    """A deep copy of the training state (for the last-good model and rollbacks)."""
    return {
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "quant": quant_state(model),
        "optimizer": copy.deepcopy(optimizer.state_dict()),
        "lr_scheduler": copy.deepcopy(lr_scheduler.state_dict()),
    }


@contextlib.contextmanager
def in_place_loading():
    """Brevitas re-creates its quantisers (and their scale Parameters) on state-dict load by
    default, which would leave an existing optimizer updating orphaned tensors: the very bug
    of the FMP authors' rollback. Load in place instead."""
    from brevitas import config

    old = config.REINIT_ON_STATE_DICT_LOAD
    config.REINIT_ON_STATE_DICT_LOAD = False
    try:
        yield
    finally:
        config.REINIT_ON_STATE_DICT_LOAD = old


def restore(snap: dict, model: nn.Module, optimizer, lr_scheduler) -> None:
    """Load a snapshot in place: the optimizer keeps pointing at the model's own parameters."""
    with in_place_loading():
        model.load_state_dict(snap["model"])
    restore_quant_state(model, snap["quant"])
    optimizer.load_state_dict(snap["optimizer"])
    lr_scheduler.load_state_dict(snap["lr_scheduler"])


def atomic_save(obj, path: Path) -> None:
    """torch.save whole or not at all (radioml.atomic: temporary file, fsync, rename)."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """A checkpoint of ours, loaded with weights_only=True; a clear error for anything else."""
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling errors come in many types
        raise ValueError(f"{path}: not a readable checkpoint ({first_line(e)})") from None
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        raise ValueError(f"{path}: not a checkpoint of this toolchain (expected format {FORMAT!r})")
    return ck


def held_model(ck: dict) -> tuple[dict, str]:
    """(snapshot, description) of the model a checkpoint's run holds: a finished run's final model (what it
    saved as model.pt), else the last model that met the floor, else the current one. The one rule both
    `load_model` and `--init_from` follow."""
    st, good = ck["state"], ck["last_good"]
    if st.get("done"):
        if st.get("final") == "last_good" and good is not None:
            return good, "final model: the last that met the floor"
        return ck["current"], "final model"
    if good is not None:
        return good, "last model that met the floor (run unfinished)"
    return ck["current"], "current model (run unfinished, none met the floor yet)"
