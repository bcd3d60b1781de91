"""The training loop: quantisation-aware training of VGG10 under a pruning scheduler.

One epoch = train on the training split, evaluate the feedback split (validation
frames carved from train; the test split only if asked, as the FMP authors
did), step ReduceLROnPlateau on the validation loss, step the pruning scheduler
with the accuracy, act on its decision, write a checkpoint. Re-running the same
command resumes from that checkpoint and reaches the same result.

Runs on CPU, one GPU, or several GPUs under torchrun (DistributedDataParallel:
every rank reads and trains on its rows of each global batch, and scores its share of the
feedback and test splits with rank 0's BatchNorm statistics: `sharded_predict`). The training step's speed
levers (fused QuantReLU, bf16 autocast, torch.compile, resident data) are
train/speed.py's; evaluation and checkpoints stay float32 and eager: Brevitas'
fake quantisation in half precision rounds differently from the float32 graph
that is exported, so only the training trajectory may change.
"""
from __future__ import annotations

import contextlib
import dataclasses
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

from radioml.batches import batch_order, iter_batches, iter_rank_batches, prefetch
from radioml.classes import FRAME_LENGTH
from radioml.atomic import write_json
from radioml.cli import first_line
from radioml.dataset import RadioMLFile
from radioml.metrics import summarize
from radioml.publish import dir_lock

from . import checkpoint as ckpt
from .config import TrainConfig, semantic_diff
from .cost import model_cost
from .channel_pruning import widths
from .masks import deployable_copy, init_masks, masked_state, prune_step, sparsity
from .model import ModelConfig, build_vgg10
from .narrow import narrow
from .saved_model import load_model, save_model
from .results import write_metrics
from .scheduler_factory import make_scheduler
from .speed import Resident, SpeedConfig, Step, fits, for_run, training_forward
from .sync_bn import sync_batchnorm

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
        if not dist.is_initialized():  # a sweep (train.compare, train.table3) trains its runs in one job
            dist.init_process_group("nccl" if want_cuda else "gloo")
        device = torch.device(f"cuda:{d.local_rank}") if want_cuda else torch.device("cpu")
        if want_cuda:
            torch.cuda.set_device(device)
        return d, device
    if device_pref == "auto":
        return Dist(), torch.device("cuda" if want_cuda else "cpu")
    return Dist(), torch.device(device_pref)


def check_world(world: int, batch_size: int, n_train: int, n_feedback: int, n_test: int) -> None:
    """Every rank needs frames of every global batch (the last one too) and of the feedback and test splits."""
    if world == 1:
        return
    last = n_train % batch_size or batch_size
    short = [f"{what} {n}" for what, n in (("--optim.batch_size", batch_size), ("the epoch's last batch", last),
                                           ("the feedback split", n_feedback), ("the test split", n_test)) if n < world]
    if short:
        raise ValueError(f"--nproc_per_node {world}: more ranks than frames to share ({', '.join(short)}); "
                         f"use at most {min(batch_size, last, n_feedback, n_test)} processes or a larger batch")


def mask_digest(model: nn.Module) -> str:
    """sha256 of every pruning mask of `model`, in module order."""
    import hashlib

    h = hashlib.sha256()
    for name, buf in model.named_buffers():
        if name.endswith("_mask"):
            h.update(name.encode() + buf.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def assert_same_masks(model: nn.Module, d: Dist, epoch: int) -> None:
    """Under torchrun every rank must have pruned the same weights (each decides from the same all-reduced
    feedback accuracy and the same weights): stop the job, naming the ranks, if any differs."""
    if d.world == 1:
        return
    import torch.distributed as dist

    digests = [None] * d.world
    dist.all_gather_object(digests, mask_digest(model))
    if len(set(digests)) > 1:
        odd = [r for r, g in enumerate(digests) if g != digests[0]]
        raise RuntimeError(f"epoch {epoch}: ranks {odd} pruned other weights than rank 0 (mask digests differ); "
                           f"the ranks' models have diverged")


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
    train: np.ndarray  # every training frame this run may use
    feedback: np.ndarray
    test: np.ndarray
    feedback_name: str
    epoch_subset: float = 1.0  # < 1: each epoch trains on a fresh random fraction of `train`
    seed: int = 0

    def train_for(self, epoch: int) -> np.ndarray:
        """The training frames of one epoch (sorted: the reader shuffles them in blocks)."""
        if self.epoch_subset >= 1.0:
            return self.train
        k = max(1, int(round(self.epoch_subset * len(self.train))))
        return np.sort(np.random.default_rng([self.seed, 11, epoch]).choice(self.train, k, replace=False))


def _splits(ds: RadioMLFile, cfg: TrainConfig) -> Splits:
    data = cfg.data
    split = ds.split(data.min_train_snr, data.val_fraction)
    train = split.train
    feedback = split.val if data.feedback_split == "val" else split.test
    if data.resample_subset:
        return Splits(train, feedback, split.test, data.feedback_split, data.train_subset, cfg.seed)
    if data.train_subset < 1.0:
        rng = np.random.default_rng([cfg.seed, 7])
        k = max(1, int(round(data.train_subset * len(train))))
        train = np.sort(rng.choice(train, k, replace=False))
    return Splits(train, feedback, split.test, data.feedback_split)


@contextlib.contextmanager
def exact_float32():
    """No TF32 inside: scores on a GPU then equal a CPU re-evaluation of the exported float32 model
    (TF32 convolutions are 2-3x faster, so training keeps them)."""
    old = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = old


@torch.no_grad()
@exact_float32()
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


def sharded_predict(model: nn.Module, ds: RadioMLFile, idx: np.ndarray, device, batch_size: int, d: Dist,
                    desc: str | None = None) -> dict:
    """`predict` over `idx` with the work split between the ranks of a torchrun job: rank 0's BatchNorm statistics
    first go to every rank (each rank's last training step moved its own), each rank reads and scores its shard,
    and the shards are gathered (for a sorted `idx`, in its order), so every rank holds the same figures as a
    single process and takes the same pruning decision."""
    if d.world == 1:
        return predict(model, ds, idx, device, batch_size, desc)
    import torch.distributed as dist

    for b in model.buffers():
        dist.broadcast(b, src=0)
    part = predict(model, ds, idx[d.rank::d.world], device, batch_size, desc if d.main else None)
    parts = [None] * d.world
    dist.all_gather_object(parts, (part["loss"] * len(part["y"]), part["y"], part["pred"], part["snr"]))
    out = {}
    for i, key in enumerate(("y", "pred", "snr"), start=1):
        whole = np.empty(len(idx), parts[0][i].dtype)
        for r, shard in enumerate(parts):
            whole[r::d.world] = shard[i]
        out[key] = whole
    return {"loss": sum(s[0] for s in parts) / len(idx), "accuracy": float((out["y"] == out["pred"]).mean()), **out}


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
    sparse = sparsity(model)
    rec = {"epoch": epoch, "prunes": len(state.rates_lineage), "accuracy": acc,
           "kept_fraction": sparse["kept_fraction"], "eta_measured": sparse["weights"] / max(sparse["kept"], 1),
           "eta_eq3_lineage": _eq3(state.rates_lineage), "eta_eq3_all_rounds": _eq3(state.rates_all)}
    if cfg.prune.cost_every_round:
        rec.update({k: v for k, v in model_cost(model).to_dict().items()
                    if k in ("bops", "weight_bits", "cost", "weights")})
    return rec


@dataclass
class Run:
    """One training run's live objects; `train` drives it epoch by epoch."""

    cfg: TrainConfig
    dist: Dist
    device: torch.device
    ds: RadioMLFile
    splits: Splits
    model: nn.Module
    opt: torch.optim.Optimizer
    lr_sched: object
    pruner: object
    state: RunState = field(default_factory=RunState)
    last_good: dict | None = None
    data_wait: float = 0.0  # seconds the training thread waited for batches
    model_cfg: ModelConfig | None = None  # the live model's config (the precision search changes its bits)
    _net: tuple | None = None  # (model, its DistributedDataParallel wrapper)
    _step: Step | None = None  # the live model's training forward (train/speed.py)
    resident: Resident | None = None  # the training split in memory, when it fits
    _speed: SpeedConfig | None = None

    def __post_init__(self):
        if self.model_cfg is None:
            self.model_cfg = self.cfg.model

    def net(self) -> nn.Module:
        """The module to train: the model, wrapped for DDP under torchrun (rewrapped after a rebuild)."""
        if self.dist.world == 1:
            return self.model
        if self._net is None or self._net[0] is not self.model:
            if self.cfg.sync_bn:
                sync_batchnorm(self.model)
            self._net = (self.model, nn.parallel.DistributedDataParallel(
                training_forward(self.model, self.speed, self.device),
                device_ids=[self.device.index] if self.device.type == "cuda" else None))
        return self._net[1]

    def snapshot(self) -> dict:
        snap = ckpt.snapshot(self.model, self.opt, self.lr_sched)
        snap["model_cfg"] = self.model_cfg.to_dict()
        return snap

    def _install(self, model_cfg: ModelConfig) -> None:
        """A model built for `model_cfg`, with a new optimizer and LR scheduler, in place of the live
        ones (their state comes next, from a snapshot: the parameters correspond one to one)."""
        self.model, self.opt, self.lr_sched = _model_and_optimizers(model_cfg, self.cfg, self.device)
        self.model_cfg = model_cfg

    def rebuild(self, model_cfg: ModelConfig) -> None:
        """Give the live model other bits: weights, masks, quantiser scales, optimizer and LR state
        carry over to a model built for `model_cfg`."""
        if model_cfg != self.model_cfg:
            snap = self.snapshot()
            self._install(model_cfg)
            ckpt.restore(snap, self.model, self.opt, self.lr_sched)

    def restore_snapshot(self, snap: dict) -> None:
        """Load a snapshot in place, into a model built for its bits if they differ from the live ones."""
        model_cfg = ModelConfig(**snap["model_cfg"]) if "model_cfg" in snap else self.model_cfg
        if model_cfg != self.model_cfg:
            self._install(model_cfg)
        ckpt.restore(snap, self.model, self.opt, self.lr_sched)

    def requantize(self, bits: dict) -> None:
        self.rebuild(dataclasses.replace(self.model_cfg, layer_weight_bits=tuple(bits["weight"]),
                                         layer_act_bits=tuple(bits["act"])))
        if self.dist.main:
            log.info(f"bits now {self.model_cfg.bits_label()}")

    @property
    def ck_path(self) -> Path:
        return Path(self.cfg.run_dir) / "checkpoint.pt"

    def resume(self) -> None:
        """Continue from this run directory's checkpoint (same config only)."""
        ck = ckpt.load_checkpoint(self.ck_path)
        written_by = ck.get("world", 1)  # checkpoints before the world size was recorded: one process
        if written_by != self.dist.world:
            raise ValueError(f"{self.ck_path}: written by a run of {written_by} process(es), resumed with "
                             f"{self.dist.world}: its ranks split each global batch and the RNG state is rank 0's, so "
                             f"only the same world size continues it exactly; rerun with --nproc_per_node {written_by}")
        diff = semantic_diff(ck["config"], self.cfg.to_dict(), defaults=type(self.cfg)().to_dict())
        if diff:
            raise ValueError(f"{self.ck_path}: written by another config (differs in {', '.join(diff)}); "
                             f"use another --run_dir or delete it")
        try:
            self.restore_snapshot(ck["current"])
            self.pruner.load_state_dict(ck["pruner"])
        except (RuntimeError, KeyError) as e:
            raise ValueError(f"{self.ck_path}: does not fit this version of the toolchain ({first_line(e)}); "
                             f"use another --run_dir or delete it") from None
        self.state = RunState(**ck["state"])
        self.last_good = ck["last_good"]
        torch.set_rng_state(ck["rng"])
        trained_on, here = ck.get("data"), data_identity(self.ds)
        if trained_on and (trained_on["frames"], trained_on["digest"]) != (here["frames"], here["digest"]):
            if not self.cfg.allow_other_data:
                raise ValueError(f"{self.ck_path}: trained on {trained_on['path']} ({trained_on['frames']:,} frames), "
                                 f"not on {self.cfg.data.path} ({here['frames']:,} frames, other contents); pass "
                                 f"--allow_other_data true to continue on it anyway")
            log.info(f"continuing on other data than {trained_on['path']} (--allow_other_data)")
        log.info(f"resumed {self.ck_path} at epoch {self.state.epoch}")

    def start_from(self, src: str) -> None:
        """Start from another run's model: a run directory with a checkpoint (its final model when
        that run finished, else its current one), or a model.pt (e.g. a shipped reference model),
        whose zero weights start pruned."""
        p = Path(src)
        ck = p / "checkpoint.pt" if p.is_dir() else p
        if ck.name == "checkpoint.pt" and ck.exists():
            start = ckpt.load_checkpoint(ck)
            snap, what = ckpt.held_model(start)
            self._check_shape(ModelConfig(**snap.get("model_cfg", start["config"]["model"])), ck)
            with ckpt.in_place_loading():
                self.model.load_state_dict(snap["model"])
            ckpt.restore_quant_state(self.model, snap["quant"])
            log.info(f"starting from {src}: its {what} (epoch {start['state']['epoch']})")
            return
        model, mcfg, what = load_model(p)
        self._check_shape(mcfg, p)
        with ckpt.in_place_loading():
            self.model.load_state_dict(masked_state(self.model, model.state_dict()))
        log.info(f"starting from {what}")

    def _check_shape(self, start_cfg: ModelConfig, where) -> None:
        """A start model must have this run's layers and widths; its bits may differ (the weights and
        scales are float: a 4-bit model starts an 8-bit run, as Table 3's rows do)."""
        if start_cfg.same_shape(self.cfg.model):
            if start_cfg.bits_label() != self.cfg.model.bits_label() and self.dist.main:
                log.info(f"start model bits {start_cfg.bits_label()} -> {self.cfg.model.bits_label()}")
            return
        raise ValueError(f"{where}: its model ({start_cfg}) has other layers or widths than this run's "
                         f"({self.cfg.model}); pass the same --model.* shape flags")

    def train_epoch(self, net: nn.Module) -> tuple[float, float]:
        """One pass over the training split; (mean loss, accuracy) of its frames (all ranks')."""
        cfg, d, st = self.cfg, self.dist, self.state
        net.train()
        bs = cfg.optim.batch_size
        frames = self.splits.train_for(st.epoch)
        step = self.step(net)
        order = dict(shuffle=True, seed=cfg.seed, epoch=st.epoch, buffer_frames=cfg.data.buffer_frames)
        if self.resident is not None:
            it = (self.resident.batch(idx) for idx in batch_order(frames, bs, **order))
        else:  # each rank reads only its rows of every global batch
            it = ((torch.from_numpy(b.x).to(self.device, non_blocking=True),
                   torch.from_numpy(b.y).to(self.device, non_blocking=True))
                  for b in prefetch(iter_rank_batches(self.ds, frames, bs, d.rank, d.world, **order), 3))
        loss_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        correct = torch.zeros((), dtype=torch.int64, device=self.device)
        seen = 0
        n_batches = math.ceil(len(frames) / bs)
        bar = tqdm(total=n_batches, desc=f"epoch {st.epoch}", leave=False, disable=not d.main, mininterval=1.0)
        t_wait = time.perf_counter()
        for i, (x, y) in enumerate(it):
            self.data_wait += time.perf_counter() - t_wait
            self.opt.zero_grad(set_to_none=True)
            out = step(x)
            loss = F.cross_entropy(out.float(), y)
            loss.backward()
            self.opt.step()
            loss_sum += loss.detach().double() * len(y)  # summed on the device: no host sync per step
            correct += (out.detach().argmax(1) == y).sum()
            seen += len(y)
            bar.update(1)
            if d.main and (i % 50 == 0 or i == n_batches - 1):
                bar.set_postfix(loss=f"{loss_sum.item() / seen:.3f}", acc=f"{correct.item() / seen:.3f}",
                                p=f"{self.pruner.rate:.3g}")
            t_wait = time.perf_counter()
        bar.close()
        if d.world > 1:  # the whole global batch's figures, as one process would log them
            import torch.distributed as dist

            totals = torch.stack([loss_sum, correct.double(), torch.tensor(float(seen), dtype=torch.float64,
                                                                           device=self.device)])
            dist.all_reduce(totals)
            loss_sum, correct, seen = totals[0], totals[1], int(totals[2].item())
        return loss_sum.item() / max(seen, 1), correct.item() / max(seen, 1)

    @property
    def speed(self) -> SpeedConfig:
        """The speed levers for this run's length, at least a round's epochs (train/speed.py)."""
        if self._speed is None:
            steps_per_epoch = len(self.splits.train_for(0)) // self.cfg.optim.batch_size
            self._speed = for_run(self.cfg.train, steps_per_epoch * max(1, self.cfg.optim.epochs_per_round))
        return self._speed

    def step(self, net: nn.Module) -> Step:
        """The training forward of the live model with this run's speed levers (rebuilt with the model)."""
        if self._step is None or self._step.model is not self.model:
            self._step = Step(self.model, self.speed, self.device, wrapped=net if net is not self.model else None)
            if self.dist.main:
                log.info(f"training step: {self._step.label}")
        return self._step

    def act(self, action, feedback_accuracy: float) -> None:
        """Carry out the pruning scheduler's decision."""
        st, model = self.state, self.model
        if action.met_floor:
            self.last_good = self.snapshot()
            self.last_good["rates_lineage"] = list(st.rates_lineage)
            if self.dist.main:
                st.rounds.append(_round_record(model, st, st.epoch, feedback_accuracy, self.cfg))
        if action.kind == "prune":
            removed = prune_step(model, action.amount, self.pruner.structure, self.cfg.prune.scope)
            assert_same_masks(model, self.dist, st.epoch)
            st.rates_all.append(action.amount)
            st.rates_lineage.append(action.amount)
            if self.dist.main and self.pruner.structure == "filters":
                log.info(f"filters kept per layer: {widths(model)} ({removed} weights removed)")
            if removed == 0:
                st.done, st.stop_reason, st.final = True, "nothing left to prune", "current"
        elif action.kind == "rollback":
            self.restore_last_good()
            if action.bits is not None:
                self.requantize(action.bits)
        elif action.kind == "requantize":
            self.requantize(action.bits)
        elif action.kind == "stop":
            st.done, st.stop_reason, st.final = True, action.reason, action.final

    def restore_last_good(self) -> None:
        self.restore_snapshot(self.last_good)
        self.state.rates_lineage = list(self.last_good["rates_lineage"])

    def save_checkpoint(self) -> None:
        ckpt.atomic_save({
            "format": ckpt.FORMAT, "config": self.cfg.to_dict(),
            "current": self.snapshot(), "last_good": self.last_good,
            "pruner": self.pruner.state_dict(), "state": vars(self.state), "rng": torch.get_rng_state(),
            "data": self._data_identity, "world": self.dist.world},
            self.ck_path)

    @property
    def _data_identity(self) -> dict:
        if not hasattr(self, "_identity"):
            self._identity = data_identity(self.ds)
        return self._identity

    def epoch(self, net: nn.Module) -> None:
        """Train, measure the feedback accuracy, step both schedulers, act, checkpoint."""
        t0 = time.perf_counter()
        st, splits = self.state, self.splits
        st.epoch += 1
        rate = self.pruner.rate
        # epochs_per_round 0 (dense runs only): score the start model as it is
        tr_loss, tr_acc = self.train_epoch(net) if self.cfg.optim.epochs_per_round else (float("nan"),) * 2
        fb = sharded_predict(self.model, self.ds, splits.feedback, self.device, self.cfg.optim.eval_batch_size,
                             self.dist)
        self.lr_sched.step(fb["loss"])
        action = self.pruner.step(fb["accuracy"])
        kept = sparsity(self.model)["kept_fraction"]
        st.history.append({
            "epoch": st.epoch, "train_loss": tr_loss, "train_accuracy": tr_acc,
            "feedback_loss": fb["loss"], "feedback_accuracy": fb["accuracy"],
            "lr": self.opt.param_groups[0]["lr"], "p": rate, "kept_fraction": kept,
            "bits": self.model_cfg.bits_label(),
            "action": action.kind, "seconds": time.perf_counter() - t0})
        if self.dist.main:
            log.info(f"epoch {st.epoch:3d}  loss {tr_loss:.4f}  train acc {tr_acc:.4f}  "
                     f"{splits.feedback_name} acc {fb['accuracy']:.4f}  kept {kept:.4f}  p {rate:.4g}  "
                     f"{'bits ' + self.model_cfg.bits_label() + '  ' if self.cfg.prune.strategy == 'precision' else ''}"
                     f"-> {action.kind}{' ' + action.reason if action.reason else ''}")
        self.act(action, fb["accuracy"])
        if self.dist.main:
            self.save_checkpoint()
        _barrier(self.dist)


def _model_and_optimizers(model_cfg: ModelConfig, cfg: TrainConfig, device):
    """A masked model built for `model_cfg`, its Adam and its ReduceLROnPlateau, as the run configures them."""
    model = init_masks(build_vgg10(model_cfg)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    lr_sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
        opt, mode="min", factor=cfg.optim.plateau_factor, patience=cfg.optim.plateau_patience)
    return model, opt, lr_sched


def _new_run(cfg: TrainConfig) -> Run:
    """Seeded model, optimizer, schedulers and data of a fresh run (before any resume)."""
    d, device = _init_dist(cfg.device)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    ds = RadioMLFile(cfg.data.path, cfg.data.cache_dir)
    splits = _splits(ds, cfg)
    check_world(d.world, cfg.optim.batch_size, len(splits.train_for(0)), len(splits.feedback), len(splits.test))
    _setup_logging(Path(cfg.run_dir), d.main)
    model, opt, lr_sched = _model_and_optimizers(cfg.model, cfg, device)
    pruner = make_scheduler(cfg.prune.strategy, cfg.prune, cfg.optim.epochs_per_round, cfg.precision,
                            cfg.optim.stop_patience)
    # under torchrun a rank reads only its share of each epoch instead of holding the whole split
    held = d.world == 1 and fits(len(splits.train), FRAME_LENGTH, cfg.train, device)
    resident = Resident(ds, splits.train, device) if held else None
    return Run(cfg, d, device, ds, splits, model, opt, lr_sched, pruner, resident=resident)


def data_identity(ds: RadioMLFile) -> dict:
    """What says which data a run trained on: its size, and a digest of its labels, SNRs and 16 frames."""
    import hashlib

    h = hashlib.sha256(ds.labels.tobytes() + ds.snrs.tobytes())
    h.update(ds.read(np.linspace(0, ds.n_frames - 1, 16).round().astype(np.int64)).tobytes())
    return {"path": str(ds.path), "frames": int(ds.n_frames), "digest": h.hexdigest()}


def train(cfg: TrainConfig) -> Path:
    """Run (or resume) one training run; return its run directory."""
    cfg.validate()
    with dir_lock(Path(cfg.run_dir)):
        return _train(cfg)


def _train(cfg: TrainConfig) -> Path:
    run = _new_run(cfg)
    if run.ck_path.exists():
        run.resume()
    elif cfg.init_from:
        run.start_from(cfg.init_from)
    if _already_finished(run):
        log.info(f"finished at epoch {run.state.epoch}: {cfg.run_dir}/metrics.json and model.pt are this run's; "
                 f"nothing to redo")
        run.ds.close()
        return Path(cfg.run_dir)
    if getattr(run.pruner, "started", True) is False:  # the precision search ranks the start model's layers
        from .precision import layer_figures

        run.pruner.start(layer_figures(run.model, FRAME_LENGTH), cfg.model.input_bits,
                         run.model_cfg.weight_bits_each, run.model_cfg.act_bits_each)
    dist, splits = run.dist, run.splits
    if dist.main:
        write_json(Path(cfg.run_dir) / "config.json", cfg.to_dict(), indent=2)
        per_epoch = len(splits.train_for(0))
        log.info(f"data {cfg.data.path}: train {per_epoch:,}"
                 f"{f' an epoch (of {len(splits.train)})' if per_epoch < len(splits.train) else ''}, feedback ({splits.feedback_name}) "
                 f"{len(splits.feedback)}, test {len(splits.test)} frames{' (training split resident)' if run.resident else ''}; "
                 f"device {run.device}, world {dist.world}; "
                 f"strategy {cfg.prune.strategy}, structure {cfg.prune.structure}, floor {cfg.prune.floor}")
    while not run.state.done:
        run.epoch(run.net())
    if run.state.final == "last_good" and run.last_good is not None:
        run.restore_last_good()
    test = sharded_predict(run.model, run.ds, run.splits.test, run.device, cfg.optim.eval_batch_size, dist, "test")
    if dist.main:
        _finish(run, test)
    _barrier(dist)
    run.ds.close()
    return Path(cfg.run_dir)


def _already_finished(run: Run) -> bool:
    """A rerun of a finished run: its checkpoint is done and its metrics are that final state's (re-scoring
    the test split would only spend minutes and overwrite the run's own figures, such as its data wait)."""
    from radioml.artifacts import ArtifactError

    from .results import read_metrics

    run_dir = Path(run.cfg.run_dir)
    if not (run.state.done and (run_dir / "metrics.json").exists() and (run_dir / "model.pt").exists()):
        return False
    try:
        return read_metrics(run_dir)["epochs"] == run.state.epoch
    except (ArtifactError, KeyError):
        return False


def _finish(run: Run, res: dict):
    """Final model, test metrics (`res`: the test split's predictions), cost and plots into the run directory."""
    from .plots import plot_run

    model, splits, cfg, state = run.model, run.splits, run.cfg, run.state
    met, data_wait = run.last_good is not None, run.data_wait
    run_dir = Path(cfg.run_dir)
    metrics = summarize(res["y"], res["pred"], res["snr"])
    sparse = sparsity(model)
    final, model_cfg = narrow(deployable_copy(model), run.model_cfg)
    cost = model_cost(final)
    dense = model_cost(final, discount_sparsity=False)
    metrics.update({
        "strategy": cfg.prune.strategy, "structure": cfg.prune.structure,
        "widths": {"conv": list(model_cfg.convs), "dense": list(model_cfg.denses)},
        "bits": {"input": model_cfg.input_bits, "weight": list(model_cfg.weight_bits_each),
                 "activation": list(model_cfg.act_bits_each), "label": model_cfg.bits_label()},
        "floor": cfg.prune.floor, "feedback_split": splits.feedback_name, "met_floor": met,
        "stop_reason": state.stop_reason, "epochs": state.epoch,
        "pruning_steps_kept": len(state.rates_lineage), "pruning_steps_all": len(state.rates_all),
        "rollbacks": sum(h["action"] == "rollback" for h in state.history),
        "weights": sparse["weights"], "weights_kept": sparse["kept"],
        "eta_measured": sparse["weights"] / max(sparse["kept"], 1),
        "eta_nonzero_after_quant": sparse["weights"] / max(cost.weights, 1),
        "eta_eq3_lineage": _eq3(state.rates_lineage), "eta_eq3_all_rounds": _eq3(state.rates_all),
        "cost": cost.to_dict(), "cost_dense": dense.to_dict(),
        "history": state.history, "rounds": state.rounds, "data_wait_seconds": data_wait,
        "sparsity_per_layer": sparse["layers"],
    })
    save_model(final, model_cfg, cfg.to_dict(), run_dir / "model.pt")
    write_metrics(run_dir, metrics)
    plot_run(metrics, run_dir)
    log.info(f"test accuracy {metrics['accuracy']:.4f} ({len(res['y'])} frames, {splits.feedback_name} feedback), "
             f"widths {list(model_cfg.convs)} + {list(model_cfg.denses)}, "
             f"cost {cost.cost:.4f} (bops {cost.bops_pct:.2f}%, weight bits {cost.weight_bits_pct:.2f}%), "
             f"weights kept {sparse['kept']}/{sparse['weights']} (eta {metrics['eta_measured']:.2f}) -> {run_dir}")
