"""A torchrun-style worker for tests/test_training.py: one rank's sharded feedback evaluation (gloo, CPU)."""
import json
import os
import sys

import numpy as np
import torch
import torch.distributed as dist

from radioml.dataset import RadioMLFile
from train.loop import Dist, predict, sharded_predict
from train.model import ModelConfig, build_vgg10
from train.process_group import end_process_group


def main(data: str, out: str) -> None:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    dist.init_process_group("gloo")
    torch.manual_seed(0)
    model = build_vgg10(ModelConfig(conv_filters=8, dense_units=16))
    model.train()
    with torch.no_grad():  # BatchNorm statistics that differ by rank, as after each rank's own last training step
        model(torch.randn(64, 2, 1024) * (1 + rank))
    ds = RadioMLFile(data)
    idx = ds.split(None, 0.1).val
    whole = predict(model, ds, idx, torch.device("cpu"), 64) if rank == 0 else None
    shard = sharded_predict(model, ds, idx, torch.device("cpu"), 64, Dist(rank, world))
    if rank == 0:
        same = {k: bool(np.array_equal(shard[k], whole[k])) for k in ("y", "pred", "snr")}
        with open(out, "w") as f:
            json.dump({"frames": len(idx), "accuracy": [shard["accuracy"], whole["accuracy"]],
                       "loss": [shard["loss"], whole["loss"]], "same": same}, f)
    end_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
