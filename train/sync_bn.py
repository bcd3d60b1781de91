"""BatchNorm over the whole global batch under torchrun, on CPUs (gloo) as on GPUs (NCCL).

Under DistributedDataParallel each rank normalises by the statistics of its own shard, so N
processes at global batch B do not train what one process at batch B trains. PyTorch's
`nn.SyncBatchNorm` fixes that on GPUs only (it refuses CPU tensors), and its converter builds new
modules, which would drop the pruning masks' parametrisation of the BatchNorm weights (filter
pruning masks them). Here the BatchNorm modules keep their objects, parameters, buffers and hooks
and only change class: the training forward all-reduces each channel's sum, sum of squares and
count (differentiably, so the backward is the global batch's too) and updates the running
statistics with the global figures. Evaluation, export and a single process are untouched.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


class GlobalBatchNorm1d(nn.BatchNorm1d):
    """nn.BatchNorm1d whose training statistics are the whole process group's batch."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce

        dims = [0, 2] if x.dim() == 3 else [0]
        c = x.shape[1]
        local = torch.cat([x.sum(dims), (x * x).sum(dims), x.new_full((1,), x.numel() / c)])
        total = all_reduce(local)  # sums over ranks; its backward sums the ranks' gradients
        n = total[-1]
        mean = total[:c] / n
        var = (total[c:2 * c] / n - mean * mean).clamp_min(0)
        shape = (1, c, 1) if x.dim() == 3 else (1, c)
        y = (x - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)).detach(), alpha=m)
        return y


def sync_batchnorm(model: nn.Module) -> int:
    """Make every BatchNorm1d of `model` a GlobalBatchNorm1d in place; how many there are."""
    n = 0
    for m in model.modules():
        if type(m) is nn.BatchNorm1d:
            m.__class__ = GlobalBatchNorm1d
        n += isinstance(m, GlobalBatchNorm1d)
    return n

