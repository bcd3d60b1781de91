"""Where a sweep's units of work run: one after another in this process (local), or as Ray tasks (ray).

A unit is a module-level function and its arguments; it writes only its own run directories and
resumes from its own checkpoints, so a Ray task retried after its worker died continues where the
dead one stopped and nothing finished is recomputed. Results come back in the units' order, so a
table assembled from them is the serial run's. Ray is optional (requirements-dist.txt): the local
executor needs nothing more, and `--executor ray` without Ray fails in one line before any work.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

EXECUTORS = ("local", "ray")
RETRIES = 3  # a task whose worker dies (a killed process, a lost node) is run again, up to this many times


@dataclass(frozen=True)
class Unit:
    """One unit of work: `fn(*args)`, asking for `cpus` CPUs (and a GPU where `gpu`)."""

    name: str
    fn: Callable[..., Any]
    args: tuple = ()
    cpus: int = 1
    gpu: bool = False
    kwargs: dict = field(default_factory=dict)


def add_executor_flags(p) -> None:
    """The --executor and --ray-address flags every sweep takes."""
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="run the units of work one after another here (local), or as Ray tasks (ray: a local Ray "
                        "cluster unless --ray-address names one) (default: %(default)s)")
    p.add_argument("--ray-address", default=None,
                   help="with --executor ray: the cluster to join (auto, or HOST:PORT of `ray start --head`); "
                        "default: RAY_ADDRESS, else a cluster of this machine's CPUs started for the run")


def connect(executor: str, address: str | None = None) -> None:
    """Check the executor before any work: Ray importable and its cluster reachable (one-line errors)."""
    if executor not in EXECUTORS:
        raise ValueError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if executor == "local":
        if address is not None:
            raise ValueError("--ray-address needs --executor ray")
        return
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ValueError("--executor ray under torchrun: every rank would start the same tasks; run the sweep "
                         "once (Ray gives each task its device), or torchrun with --executor local")
    try:
        import ray
    except ImportError:
        raise ValueError("--executor ray: Ray is not installed here (pip install -r requirements-dist.txt)") from None
    if ray.is_initialized():
        return
    reachable(address)
    # a cluster started here runs the sweep's tasks at normal priority (Ray's default niceness 15 starves them
    # beside any other work on the machine); a cluster joined keeps its own settings
    own = {} if address or os.environ.get("RAY_ADDRESS") else {"_system_config": {"worker_niceness": 0}}
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", os.getcwd())}}, **own)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"--ray-address {address or os.environ.get('RAY_ADDRESS', '(local)')}: cannot join a Ray "
                         f"cluster there ({first[:160]})") from None


def main_process() -> bool:
    """Whether this process writes a sweep's summary files: always, except on ranks other than 0 of a torchrun
    job (every rank trains the sweep's runs together; one writes)."""
    return os.environ.get("RANK", "0") == "0"


def reachable(address: str | None, timeout: float = 5.0) -> None:
    """A HOST:PORT cluster address answers a TCP connection within `timeout` s (Ray's own client retries for
    minutes against a dead address)."""
    if not address or address in ("auto", "local") or address.startswith("ray://"):
        return
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"--ray-address {address!r}: expected auto or HOST:PORT (the head's GCS port, 6379 by "
                         f"default)")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise ValueError(f"--ray-address {address}: no Ray head answers there ({e.strerror or e}); start one with "
                         f"`ray start --head` or check the address") from None


def run_units(units: list[Unit], executor: str = "local", address: str | None = None) -> list:
    """Each unit's result, in the units' order."""
    connect(executor, address)
    if executor == "local":
        return [u.fn(*u.args, **u.kwargs) for u in units]
    import ray

    gpus = ray.cluster_resources().get("GPU", 0)
    refs = [ray.remote(u.fn).options(name=u.name, num_cpus=u.cpus, num_gpus=1 if u.gpu and gpus else 0,
                                     max_retries=RETRIES).remote(*u.args, **u.kwargs) for u in units]
    return ray.get(refs)
