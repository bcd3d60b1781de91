"""The training loop: quantisation-aware training of VGG10 under a pruning scheduler.

One epoch = train on the training split, evaluate the feedback split (validation
frames carved from train; the test split only if asked, as the FMP authors
did), step ReduceLROnPlateau on the validation loss, step the pruning scheduler
with the accuracy, act on its decision, write a checkpoint. Re-running the same
command resumes from that checkpoint and reaches the same result.

Runs on CPU, one GPU, or several GPUs under torchrun (DistributedDataParallel:
every rank trains on its slice of each global batch). Mixed precision is not
used: Brevitas' fake quantisation in half precision rounds differently from the
float32 graph that is exported, so the trained model would not be the deployed one.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from radioml.batches import iter_batches, prefetch
from radioml.cli import first_line
from radioml.dataset import RadioMLFile
from radioml.metrics import summarize

from . import checkpoint as ckpt
from .config import TrainConfig, semantic_diff
from .cost import model_cost
from .channel_pruning import widths
from .masks import deployable_copy, init_masks, prune_step, sparsity
from .model import build_vgg10
from .narrow import narrow
from .saved_model import save_model
from .schedulers import make_scheduler

log = logging.getLogger("train")


@dataclass
class Dist:
    """Process-group facts; world 1 when not launched by torchrun."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_dist(device_pref: str) -> tuple[Dist, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    want_cuda = device_pref.startswith("cuda") or (device_pref == "auto" and torch.cuda.is_available())
    if world > 1:
        import torch.distributed as dist

        d = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if want_cuda else "gloo")
        device = torch.device(f"cuda:{d.local_rank}") if want_cuda else torch.device("cpu")
        if want_cuda:
            torch.cuda.set_device(device)
        return d, device
    if device_pref == "auto":
        return Dist(), torch.device("cuda" if want_cuda else "cpu")
    return Dist(), torch.device(device_pref)


def _barrier(d: Dist):
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


def _setup_logging(run_dir: Path, main: bool) -> None:
    log.setLevel(logging.INFO)
    log.handlers.clear()
    log.propagate = False
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        fh = logging.FileHandler(run_dir / "train.log")
        fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(fh)
        sh = logging.StreamHandler()
        sh.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(sh)


@dataclass
class Splits:
    train: np.ndarray
    feedback: np.ndarray
    test: np.ndarray
    feedback_name: str


def _splits(ds: RadioMLFile, cfg: TrainConfig) -> Splits:
    d = cfg.data
    sp = ds.split(d.min_train_snr, d.val_fraction)
    train = sp.train
    if d.train_subset < 1.0:
        rng = np.random.default_rng([cfg.seed, 7])
        k = max(1, int(round(d.train_subset * len(train))))
        train = np.sort(rng.choice(train, k, replace=False))
    feedback = sp.val if d.feedback_split == "val" else sp.test
    return Splits(train, feedback, sp.test, d.feedback_split)


@torch.no_grad()
def predict(model: nn.Module, ds: RadioMLFile, idx: np.ndarray, device, batch_size: int = 1024,
            desc: str | None = None) -> dict:
    """Logits-free evaluation: mean loss, true labels, predictions and SNRs of `idx`."""
    model.eval()
    ys, ps, ss, loss_sum = [], [], [], 0.0
    batches = prefetch(iter_batches(ds, idx, batch_size), 2)
    for b in tqdm(batches, total=math.ceil(len(idx) / batch_size), desc=desc, leave=False,
                  disable=desc is None, mininterval=1.0):
        x = torch.from_numpy(b.x).to(device)
        y = torch.from_numpy(b.y).to(device)
        out = model(x)
        loss_sum += F.cross_entropy(out, y, reduction="sum").item()
        ys.append(b.y)
        ps.append(out.argmax(1).cpu().numpy())
        ss.append(b.snr)
    y, p = np.concatenate(ys), np.concatenate(ps)
    return {"loss": loss_sum / len(y), "accuracy": float((y == p).mean()), "y": y, "pred": p,
            "snr": np.concatenate(ss)}


def _train_epoch(model, ds, idx, opt, cfg: TrainConfig, epoch: int, device, d: Dist, rate: float,
                 data_wait: list) -> tuple[float, float]:
    model.train()
    bs = cfg.optim.batch_size
    n_batches = math.ceil(len(idx) / bs)
    it = prefetch(iter_batches(ds, idx, bs, shuffle=True, seed=cfg.seed, epoch=epoch,
                               buffer_frames=cfg.data.buffer_frames), 3)
    loss_sum, correct, seen = 0.0, 0, 0
    bar = tqdm(total=n_batches, desc=f"epoch {epoch}", leave=False, disable=not d.main, mininterval=1.0)
    t_wait = time.perf_counter()
    for b in it:
        data_wait[0] += time.perf_counter() - t_wait
        x = torch.from_numpy(b.x[d.rank::d.world]).to(device, non_blocking=True)
        y = torch.from_numpy(b.y[d.rank::d.world]).to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(y)
        correct += int((out.argmax(1) == y).sum().item())
        seen += len(y)
        bar.update(1)
        bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}", p=f"{rate:.3g}")
        t_wait = time.perf_counter()
    bar.close()
    return loss_sum / max(seen, 1), correct / max(seen, 1)


@dataclass
class RunState:
    """Everything beyond model/optimizer state that a resumed run needs."""

    epoch: int = 0
    history: list = field(default_factory=list)  # one record per epoch
    rounds: list = field(default_factory=list)  # one record per model that met the floor
    rates_all: list = field(default_factory=list)  # every pruning rate applied (eq. 3, all rounds)
    rates_lineage: list = field(default_factory=list)  # rates applied to the current model
    done: bool = False
    stop_reason: str = ""
    final: str = "last_good"


def _eq3(rates) -> float:
    """Eq. (3) of the paper: prod over pruning steps of 1 / (1 - p)."""
    return float(np.prod([1.0 / (1.0 - p) for p in rates])) if rates else 1.0


def _round_record(model, state: RunState, epoch: int, acc: float, cfg: TrainConfig) -> dict:
    sp = sparsity(model)
    rec = {"epoch": epoch, "prunes": len(state.rates_lineage), "accuracy": acc,
           "kept_fraction": sp["kept_fraction"], "eta_measured": sp["weights"] / max(sp["kept"], 1),
           "eta_eq3_lineage": _eq3(state.rates_lineage), "eta_eq3_all_rounds": _eq3(state.rates_all)}
    if cfg.prune.cost_every_round:
        rec.update({k: v for k, v in model_cost(model).to_dict().items()
                    if k in ("bops", "weight_bits", "cost", "weights")})
    return rec


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) one training run; return its run directory."""
    cfg.validate()
    run_dir = Path(cfg.run_dir)
    d, device = _init_dist(cfg.device)
    _setup_logging(run_dir, d.main)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    ds = RadioMLFile(cfg.data.path, cfg.data.cache_dir)
    sp = _splits(ds, cfg)
    model = init_masks(build_vgg10(cfg.model)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    lr_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=cfg.optim.plateau_factor, patience=cfg.optim.plateau_patience)
    pruner = make_scheduler(cfg.prune.strategy, cfg.prune, cfg.optim.epochs_per_round)
    state = RunState()
    last_good = None
    ck_path = run_dir / "checkpoint.pt"
    cfg_dict = cfg.to_dict()
    if ck_path.exists():
        ck = ckpt.load_checkpoint(ck_path)
        diff = semantic_diff(ck["config"], cfg_dict)
        if diff:
            raise ValueError(f"{ck_path}: written by another config (differs in {', '.join(diff)}); "
                             f"use another --run_dir or delete it")
        try:
            ckpt.restore(ck["current"], model, opt, lr_sched)
            pruner.load_state_dict(ck["pruner"])
        except (RuntimeError, KeyError) as e:
            raise ValueError(f"{ck_path}: does not fit this version of the toolchain ({first_line(e)}); "
                             f"use another --run_dir or delete it") from None
        state = RunState(**ck["state"])
        last_good = ck["last_good"]
        torch.set_rng_state(ck["rng"])
        log.info(f"resumed {ck_path} at epoch {state.epoch}")
    elif cfg.init_from:
        start = ckpt.load_checkpoint(Path(cfg.init_from) / "checkpoint.pt")
        st = start["state"]
        final = st["done"] and st["final"] == "last_good" and start["last_good"] is not None
        snap = start["last_good"] if final else start["current"]  # a finished run's final model
        with ckpt.in_place_loading():
            model.load_state_dict(snap["model"])
        ckpt.restore_quant_state(model, snap["quant"])
        log.info(f"starting from the {'final' if final else 'current'} model of {cfg.init_from} (epoch {st['epoch']})")
    net = model
    if d.world > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if d.main:
        (run_dir / "config.json").write_text(json.dumps(cfg_dict, indent=2))
        log.info(f"data {cfg.data.path}: train {len(sp.train)}, feedback ({sp.feedback_name}) "
                 f"{len(sp.feedback)}, test {len(sp.test)} frames; device {device}, world {d.world}; "
                 f"strategy {cfg.prune.strategy}, floor {cfg.prune.floor}")

    data_wait = [0.0]
    while not state.done:
        t0 = time.perf_counter()
        state.epoch += 1
        rate = pruner.rate
        tr_loss, tr_acc = _train_epoch(net, ds, sp.train, opt, cfg, state.epoch, device, d, rate, data_wait)
        fb = predict(model, ds, sp.feedback, device, cfg.optim.eval_batch_size)
        lr_sched.step(fb["loss"])
        action = pruner.step(fb["accuracy"])
        kept = sparsity(model)["kept_fraction"]
        state.history.append({
            "epoch": state.epoch, "train_loss": tr_loss, "train_accuracy": tr_acc,
            "feedback_loss": fb["loss"], "feedback_accuracy": fb["accuracy"],
            "lr": opt.param_groups[0]["lr"], "p": rate, "kept_fraction": kept,
            "action": action.kind, "seconds": time.perf_counter() - t0})
        if d.main:
            log.info(f"epoch {state.epoch:3d}  loss {tr_loss:.4f}  train acc {tr_acc:.4f}  "
                     f"{sp.feedback_name} acc {fb['accuracy']:.4f}  kept {kept:.4f}  p {rate:.4g}  "
                     f"-> {action.kind}{' ' + action.reason if action.reason else ''}")
        if action.met_floor:
            last_good = ckpt.snapshot(model, opt, lr_sched)
            last_good["rates_lineage"] = list(state.rates_lineage)
            if d.main:
                state.rounds.append(_round_record(model, state, state.epoch, fb["accuracy"], cfg))
        if action.kind == "prune":
            removed = prune_step(model, action.amount, pruner.structure, cfg.prune.scope)
            state.rates_all.append(action.amount)
            state.rates_lineage.append(action.amount)
            if d.main and pruner.structure == "filters":
                log.info(f"filters kept per layer: {widths(model)} ({removed} weights removed)")
            if removed == 0:
                state.done, state.stop_reason, state.final = True, "nothing left to prune", "current"
        elif action.kind == "rollback":
            ckpt.restore(last_good, model, opt, lr_sched)
            state.rates_lineage = list(last_good["rates_lineage"])
        elif action.kind == "stop":
            state.done, state.stop_reason, state.final = True, action.reason, action.final
        if d.main:
            ckpt.atomic_save({
                "format": ckpt.FORMAT, "config": cfg_dict, "current": ckpt.snapshot(model, opt, lr_sched),
                "last_good": last_good, "pruner": pruner.state_dict(), "state": vars(state),
                "rng": torch.get_rng_state()}, ck_path)
        _barrier(d)

    if state.final == "last_good" and last_good is not None:
        ckpt.restore(last_good, model, opt, lr_sched)
        state.rates_lineage = list(last_good["rates_lineage"])
    if d.main:
        _finish(model, ds, sp, cfg, state, device, last_good is not None, data_wait[0])
    _barrier(d)
    ds.close()
    return run_dir


def _finish(model, ds, sp: Splits, cfg: TrainConfig, state: RunState, device, met: bool, data_wait: float):
    """Final model, test metrics, cost and plots into the run directory."""
    from .plots import plot_run
    from radioml.atomic import write_json

    run_dir = Path(cfg.run_dir)
    res = predict(model, ds, sp.test, device, cfg.optim.eval_batch_size, desc="test")
    metrics = summarize(res["y"], res["pred"], res["snr"])
    sp_stats = sparsity(model)
    final, model_cfg = narrow(deployable_copy(model), cfg.model)
    cost = model_cost(final)
    dense = model_cost(final, discount_sparsity=False)
    metrics.update({
        "strategy": cfg.prune.strategy, "structure": cfg.prune.structure,
        "widths": {"conv": list(model_cfg.convs), "dense": list(model_cfg.denses)}, "bits": {"input": cfg.model.input_bits, "weight": cfg.model.weight_bits,
                                                  "activation": cfg.model.act_bits},
        "floor": cfg.prune.floor, "feedback_split": sp.feedback_name, "met_floor": met,
        "stop_reason": state.stop_reason, "epochs": state.epoch,
        "pruning_steps_kept": len(state.rates_lineage), "pruning_steps_all": len(state.rates_all),
        "rollbacks": sum(h["action"] == "rollback" for h in state.history),
        "weights": sp_stats["weights"], "weights_kept": sp_stats["kept"],
        "eta_measured": sp_stats["weights"] / max(sp_stats["kept"], 1),
        "eta_nonzero_after_quant": sp_stats["weights"] / max(cost.weights, 1),
        "eta_eq3_lineage": _eq3(state.rates_lineage), "eta_eq3_all_rounds": _eq3(state.rates_all),
        "cost": cost.to_dict(), "cost_dense": dense.to_dict(),
        "history": state.history, "rounds": state.rounds, "data_wait_seconds": data_wait,
        "sparsity_per_layer": sp_stats["layers"],
    })
    save_model(final, model_cfg, cfg.to_dict(), run_dir / "model.pt")
    write_json(run_dir / "metrics.json", metrics)
    plot_run(metrics, run_dir)
    log.info(f"test accuracy {metrics['accuracy']:.4f} ({len(res['y'])} frames, {sp.feedback_name} feedback), widths {list(model_cfg.convs)} + {list(model_cfg.denses)}, "
             f"cost {cost.cost:.4f} (bops {cost.bops_pct:.2f}%, weight bits {cost.weight_bits_pct:.2f}%), "
             f"weights kept {sp_stats['kept']}/{sp_stats['weights']} (eta {metrics['eta_measured']:.2f}) -> {run_dir}")
