"""Fine-tuning after a move, with optional knowledge distillation from the dense start model.

Distillation (Hinton et al. 2015): the loss is
    (1 - w) * cross-entropy(labels) + w * T^2 * KL(softmax(teacher / T) || softmax(student / T))
with the teacher the frozen dense model the search started from. `w = 0` is plain
cross-entropy. Each epoch trains on a fresh random `subset` of the training frames, drawn
from (seed, step, epoch) alone, so a resumed search repeats a step exactly.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from radioml.batches import iter_batches, prefetch
from train.speed import SpeedConfig, Step, for_run


def epoch_frames(train: np.ndarray, subset: float, seed: int, step: int, epoch: int) -> np.ndarray:
    k = max(1, int(round(subset * len(train))))
    return np.sort(np.random.default_rng([seed, 23, step, epoch]).choice(train, k, replace=False))


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor | None, y: torch.Tensor, weight: float,
                      temperature: float) -> torch.Tensor:
    ce = F.cross_entropy(student, y)
    if teacher is None or weight == 0:
        return ce
    t = temperature
    kd = F.kl_div(F.log_softmax(student / t, 1), F.log_softmax(teacher / t, 1), reduction="batchmean",
                  log_target=True) * t * t
    return (1 - weight) * ce + weight * kd


def train_epoch(model, teacher, ds, frames: np.ndarray, *, lr: float, batch_size: int, kd_weight: float,
                kd_temperature: float, seed: int, epoch_key: int, optimizer=None, desc: str | None = None,
                speed: SpeedConfig | None = None, planned_epochs: int = 1):
    """One pass over `frames` (the student's forward by train/speed.py's levers, for a fine-tune of up to
    `planned_epochs` such passes); returns (the optimizer, mean loss)."""
    model.train()
    step = Step(model, for_run(speed or SpeedConfig(), len(frames) // batch_size * planned_epochs),
                torch.device("cpu"))
    opt = optimizer or torch.optim.Adam(model.parameters(), lr=lr)
    loss_sum, seen = 0.0, 0
    batches = prefetch(iter_batches(ds, frames, batch_size, shuffle=True, seed=seed, epoch=epoch_key), 3)
    for b in tqdm(batches, total=math.ceil(len(frames) / batch_size), desc=desc, leave=False, disable=desc is None,
                  mininterval=1.0):
        x, y = torch.from_numpy(b.x), torch.from_numpy(b.y)
        with torch.no_grad():
            t = teacher(x) if teacher is not None and kd_weight > 0 else None
        opt.zero_grad(set_to_none=True)
        loss = distillation_loss(step(x).float(), t, y, kd_weight, kd_temperature)
        loss.backward()
        opt.step()
        loss_sum += loss.item() * len(y)
        seen += len(y)
    model.eval()
    return opt, loss_sum / max(seen, 1)


@torch.no_grad()
def accuracy(model, ds, idx: np.ndarray, batch_size: int = 512) -> float:
    model.eval()
    correct = 0
    for b in iter_batches(ds, idx, batch_size):
        correct += int((model(torch.from_numpy(b.x)).argmax(1).numpy() == b.y).sum())
    return correct / max(len(idx), 1)
