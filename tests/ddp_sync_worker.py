"""A torchrun-style worker for tests/test_distributed.py (gloo, CPU): rank r holds half of one batch.

`bn`: GlobalBatchNorm1d on each half against one BatchNorm1d on the whole batch (outputs, input and
parameter gradients, running statistics). `step MODEL DATA OUT`: a saved model's training steps on each rank's
rows of the file's first global batches (DistributedDataParallel over GlobalBatchNorm) against one process on the
whole batches, and against DDP with each rank's own BatchNorm statistics (what the check must tell apart).
`masks`: the masks' digest check with rank 1's mask changed.
`job ARGS...`: `python -m train ARGS` in this process, then whether a process group is still up."""
import json
import os
import sys

import torch
import torch.distributed as dist
from torch import nn


def bn(out: str) -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    from train.sync_bn import sync_batchnorm

    torch.manual_seed(0)
    x = torch.randn(8, 5, 16) * 3 + 1
    g = torch.randn(8, 5, 16)
    one = nn.BatchNorm1d(5)
    with torch.no_grad():
        one.weight.uniform_(0.5, 2)
        one.bias.uniform_(-1, 1)
    many = nn.Sequential(nn.BatchNorm1d(5))
    many[0].load_state_dict(one.state_dict())
    assert sync_batchnorm(many) == 1
    xw = x.clone().requires_grad_()
    (one(xw) * g).sum().backward()
    xs = x[rank::world].clone().requires_grad_()
    ys = many(xs)
    (ys * g[rank::world]).sum().backward()
    grads = torch.cat([many[0].weight.grad, many[0].bias.grad])
    dist.all_reduce(grads)  # the parameter gradient of the whole batch: the ranks' sum
    parts = [None] * world
    dist.all_gather_object(parts, (ys.detach(), xs.grad))
    if rank == 0:
        y = torch.empty(8, 5, 16)
        gx = torch.empty(8, 5, 16)
        for r, (yr, gr) in enumerate(parts):
            y[r::world], gx[r::world] = yr, gr
        with torch.no_grad():
            ref = one(x)  # a second training forward of `one` moves its running stats once more: compare first
        err = {"y": float((y - ref).abs().max()), "x_grad": float((gx - xw.grad).abs().max()),
               "param_grad": float((grads - torch.cat([one.weight.grad, one.bias.grad])).abs().max())}
        one2 = nn.BatchNorm1d(5)
        one2.train()(x)
        err["running_mean"] = float((many[0].running_mean - one2.running_mean).abs().max())
        err["running_var"] = float((many[0].running_var - one2.running_var).abs().max())
        err["y_scale"] = float(ref.abs().max())
        with open(out, "w") as f:
            json.dump(err, f)


def step(model_pt: str, data: str, out: str) -> None:
    """Losses, logits, parameter gradients and BatchNorm running statistics of a fp32 unfused step (the fused
    step's pool-before-quantise breaks exact ties by rounding), the second step taken from each side's own first."""
    import torch.nn.functional as F

    from radioml.batches import iter_batches, iter_rank_batches
    from radioml.dataset import RadioMLFile
    from train.saved_model import load_model
    from train.speed import SpeedConfig, training_forward
    from train.sync_bn import sync_batchnorm

    rank, world = dist.get_rank(), dist.get_world_size()
    ds = RadioMLFile(data)
    frames = ds.split(None, 0.3).train
    order = dict(shuffle=True, seed=0, epoch=0)
    whole = [b for _, b in zip(range(2), iter_batches(ds, frames, 128, **order))]
    mine = [b for _, b in zip(range(2), iter_rank_batches(ds, frames, 128, rank, world, **order))]
    speed = SpeedConfig(precision="fp32", fused=False)

    def steps(model, batches, ddp: bool) -> list[dict]:
        net = nn.parallel.DistributedDataParallel(training_forward(model, speed)) if ddp else model
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        model.train()
        rec = []
        for b in batches:
            opt.zero_grad(set_to_none=True)
            logits = net(torch.from_numpy(b.x))
            loss = F.cross_entropy(logits, torch.from_numpy(b.y))
            loss.backward()
            if ddp:  # the global batch's loss and logits in its row order, as one process sees them
                parts = [None] * world
                dist.all_gather_object(parts, (loss.detach(), logits.detach()))
                loss = sum(p[0] for p in parts) / world
                logits = torch.empty(len(b.y) * world, logits.shape[1])
                for r, p in enumerate(parts):
                    logits[r::world] = p[1]
            rec.append({"loss": loss.detach(), "logits": logits.detach(),
                        "grads": {n: q.grad.clone() for n, q in model.named_parameters() if q.grad is not None},
                        "stats": {n: v.clone() for n, v in model.named_buffers() if n.endswith(("running_mean",
                                                                                                 "running_var"))}})
            opt.step()
        return rec

    one = steps(load_model(model_pt)[0], whole, ddp=False)
    synced = load_model(model_pt)[0]
    assert sync_batchnorm(synced) > 0
    result = {"global": steps(synced, mine, ddp=True), "local": steps(load_model(model_pt)[0], mine, ddp=True)}
    if rank != 0:
        return

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:  # max error against the reference's largest value
        return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))

    errs = {}
    for name, rec in result.items():
        errs[name] = [{"loss": rel(r["loss"], o["loss"]), "logits": rel(r["logits"], o["logits"]),
                       "grads": max(rel(r["grads"][k], o["grads"][k]) for k in o["grads"]),
                       "stats": max(rel(r["stats"][k], o["stats"][k]) for k in o["stats"]),
                       "n_grads": len(r["grads"]), "n_stats": len(r["stats"])} for r, o in zip(rec, one)]
    errs["n_grads"] = len(one[0]["grads"])
    errs["rows"] = sum(len(b.y) for b in mine)
    with open(out, "w") as f:
        json.dump(errs, f)


def masks(out: str) -> None:
    from train.loop import Dist, assert_same_masks
    from train.masks import init_masks
    from train.model import ModelConfig, build_vgg10

    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = init_masks(build_vgg10(ModelConfig(conv_filters=4, dense_units=8)))
    assert_same_masks(model, Dist(rank, world), 1)  # the same: passes
    if rank == 1:
        next(b for n, b in model.named_buffers() if n.endswith("weight_mask"))[0].zero_()
    try:
        assert_same_masks(model, Dist(rank, world), 2)
        msg = None
    except RuntimeError as e:
        msg = str(e)
    with open(f"{out}.{rank}", "w") as f:
        json.dump({"error": msg}, f)


def job(out: str, *argv: str) -> None:
    from train.__main__ import main

    rc = main(list(argv))
    with open(f"{out}.{os.environ['RANK']}", "w") as f:
        json.dump({"rc": rc, "process_group_up": dist.is_initialized()}, f)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if sys.argv[1] == "job":  # the command starts and ends its own process group
        job(*sys.argv[2:])
        sys.exit(0)
    from train.process_group import end_process_group

    dist.init_process_group("gloo")
    {"bn": bn, "masks": masks, "step": step}[sys.argv[1]](*sys.argv[2:])
    end_process_group()
