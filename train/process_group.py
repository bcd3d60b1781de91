"""Ending a torchrun job's process group: every rank waits for the others, then tears its group down.

A rank that exits with its gloo group alive, or tears it down while another rank still reads from it, can
die with SIGABRT ("terminate called without an active exception") after its work is done, and torchrun then
reports the whole job failed. Entry points wrap their work in `torchrun_job()`.
"""
from __future__ import annotations

from contextlib import contextmanager


def end_process_group(wait: bool = True) -> None:
    """Destroy the default process group if one is up; with `wait`, first a barrier, so that no rank closes
    its connections while another still uses them."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if wait:
        dist.barrier()
    dist.destroy_process_group()


@contextmanager
def torchrun_job():
    """Run a command's work, then end the process group its training started (none outside torchrun).
    After an error the ranks are not waited for: the others may never reach the barrier."""
    try:
        yield
    except BaseException:
        end_process_group(wait=False)
        raise
    end_process_group()
