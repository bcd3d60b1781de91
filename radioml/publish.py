"""Output directories that are safe to replace: built aside, published by rename, replaced only if ours.

Every stage that writes a directory (export, build) builds it in a work directory beside the
target and publishes it here:

* `output_lock(out)`, first: one process at a time per output (an advisory lock on `.{name}.lock`
  beside it); a second one fails at once, naming the holder.
* `check_target(out, command, inputs, force)`, before any work: an existing `out` is replaced only
  with `force` and only if it is a previous output of the same command (the marker file
  `.amc-output` it wrote names the command and lists every file it wrote, with its size) holding
  nothing else: a file added or changed since (notes, a bitfile from hours of synthesis) makes it
  refuse, naming the file, rather than delete it. Never the working directory or one of its
  parents, never an input or a directory holding one, never through a symbolic link. One-line
  errors name the directory and the reason.
* `work_dir(out)` makes the work directory, `.{name}.tmp{pid}-XXXX` (the owning process id in the
  name), after sweeping the work directories and aside-copies of earlier processes that died
  (a directory a failed run kept for inspection carries `KEPT` and is left alone).
* `publish(work, out, command)` writes the marker and swaps the work directory with an old `out`
  in one rename (Linux renameat2 RENAME_EXCHANGE), then deletes the old one: a kill at any point
  leaves the old output or the new one at `out`, never a mix. Where the system has no exchanging
  rename, the old `out` is moved aside (`.{name}.old{pid}`) before the new one is renamed into
  place, and a kill between the two is undone by the next start's sweep, which puts it back.
* `keep_failed(work, needed_bytes)`: a failed run keeps its work directory for inspection only
  while the disk keeps room; it says what it holds, or deletes it and says so. The next run that
  publishes the same output sweeps such kept directories (`sweep_kept`): the failure they show is
  superseded.

Importable on a PYNQ board (stdlib only).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

MARKER = ".amc-output"
KEPT = "KEPT"  # in a kept failed work directory: the sweep leaves it alone
MIN_FREE_BYTES = 2 * 1024 ** 3  # a failed run's work directory is kept only while this much disk stays free


class OutputRefused(ValueError):
    """An output directory that may not be (re)written: names it and why."""


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def check_target(out, command: str, inputs=(), force: bool = False) -> None:
    """Refuse, before any work, an `out` that must not be replaced (see the module docstring)."""
    out = Path(out)
    if out.is_symlink():
        raise OutputRefused(f"{out}: is a symbolic link (to {os.readlink(out)}); pass the directory itself")
    target = out.resolve()
    cwd = Path.cwd().resolve()
    if _is_within(cwd, target):
        raise OutputRefused(f"{out}: is the working directory or one of its parents; refusing to write there")
    for inp in inputs:
        if inp is not None and _is_within(Path(inp).resolve(), target):
            raise OutputRefused(f"{out}: holds the input {inp}; choose another output directory")
    if any(p.exists() and not p.is_dir() for p in out.parents):
        raise OutputRefused(f"{out.parent}: not a directory")
    if not out.exists():
        return
    if not force:
        raise OutputRefused(f"{out}: already exists (pass --force to replace it)")
    owner = marker_command(out)
    if owner != command:
        what = f"an output of {owner}" if owner else "not an output of this toolchain (no marker file)"
        raise OutputRefused(f"{out}: {what}, not of {command}; --force replaces only {command}'s own outputs")
    if not isinstance(_marker(out).get("files"), dict):
        raise OutputRefused(f"{out}: written by an earlier version of this toolchain, which kept no list of its files, "
                            f"so --force cannot tell them from yours; delete it yourself or choose another --out")
    foreign = foreign_files(out)
    if foreign:
        more = f" and {len(foreign) - 1} more" if len(foreign) > 1 else ""
        raise OutputRefused(f"{out / foreign[0]}{more}: not written by {command} (added or changed since); move it "
                            f"out of {out} first: --force replaces only what {command} wrote")


def _marker(out) -> dict:
    try:
        d = json.loads((Path(out) / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def marker_command(out) -> str | None:
    return _marker(out).get("command")


def manifest(directory) -> dict:
    """Every file and link under `directory` (but the marker): relative path -> size in bytes."""
    directory = Path(directory)
    out = {}
    for p in sorted(directory.rglob("*")):
        if p.parent.name == "__pycache__":  # Python's caches of a bundle's driver code, rewritten at will
            continue
        if p.is_symlink() or p.is_file():
            rel = p.relative_to(directory).as_posix()
            if rel != MARKER:
                out[rel] = p.lstat().st_size
    return out


def foreign_files(out) -> list[str]:
    """Files and links under an output that its command did not write, or that changed size since: what
    replacing it would lose. An output whose marker lists no files (an older version's) is all foreign."""
    files = _marker(out).get("files")
    have = manifest(out)
    if not isinstance(files, dict):
        return sorted(have) or [MARKER]
    return [rel for rel, size in have.items() if files.get(rel) != size]


@contextlib.contextmanager
def output_lock(out, flag: str = "--out"):
    """Hold an advisory lock beside `out` (`.{name}.lock`) while it is checked, built and published: a second
    process on the same output fails at once, naming the holder."""
    out = Path(out)
    for p in reversed(out.parents):
        if p.exists() and not p.is_dir():
            raise OutputRefused(f"{p}: not a directory")
    out.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(out.parent / f".{out.name}.lock", flag, out):
        yield


def dir_lock(run_dir, flag: str = "--run_dir"):
    """The lock of a run directory that is resumed in place (training runs, searches): `.lock` inside it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return file_lock(run_dir / ".lock", flag, run_dir)


@contextlib.contextmanager
def file_lock(lock_file, flag: str, what=None):
    """An advisory lock on `lock_file` for the life of the block (the main rank's, under torchrun): a second
    process fails at once, naming the holder, instead of overwriting the first one's files. The file is removed
    on release (a refused or finished run leaves nothing); a lock taken on a file that was removed meanwhile is
    retaken on the new one."""
    what = what if what is not None else Path(lock_file).parent
    if int(os.environ.get("RANK", "0")) != 0:
        yield
        return
    import fcntl

    try:  # a file of that name that holds anything but a process id is someone else's: never truncated
        held = Path(lock_file).read_text().strip()
    except FileNotFoundError:
        held = ""
    except (OSError, UnicodeDecodeError):
        held = "?"
    if held and not held.isdigit():
        raise OutputRefused(f"{lock_file}: exists and is not a lock file of this toolchain; move it away")
    while True:
        fh = open(lock_file, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise OutputRefused(f"{what}: in use by process {holder} (another run on this {flag}); wait for it to "
                                f"end or choose another {flag}") from None
        try:
            if os.stat(lock_file).st_ino == os.fstat(fh.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        fh.close()  # its holder removed it between our open and our lock: take the new one
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_file)
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


_TMP = re.compile(r"^\.(?P<name>.+)\.(?:tmp|old)(?P<pid>\d+)(?:-.*)?$")


def sweep(parent, name: str, kept: bool = False) -> list[Path]:
    """Delete work directories and aside-copies of `name` left in `parent` by processes that died (with
    `kept`, also the work directories failed runs kept for inspection); an aside-copy whose replacement never
    arrived (killed between the renames) goes back to `name`."""
    removed = []
    for p in sorted(Path(parent).glob(f".{name}.*")):
        m = _TMP.match(p.name)
        if not m or m["name"] != name or not p.is_dir() or pid_alive(int(m["pid"])) or \
                ((p / KEPT).exists() and not kept):
            continue
        if ".old" in p.name[len(name) + 1:] and not (Path(parent) / name).exists():
            os.replace(p, Path(parent) / name)
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed


def work_dir(out) -> Path:
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sweep(out.parent, out.name)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp{os.getpid()}-", dir=out.parent))


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one rename (Linux renameat2 RENAME_EXCHANGE); False where that is not available."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    return False


def publish(work, out, command: str, log=None) -> Path:
    """Mark `work` as `command`'s output (with the list of its files) and put it at `out` (swapping with an old
    one in one rename); then sweep the work directories earlier failed runs of `out` kept."""
    work, out = Path(work), Path(out)
    (work / MARKER).write_text(json.dumps({"command": command, "pid": os.getpid(), "files": manifest(work)}))
    if not out.exists():
        os.replace(work, out)
    elif _exchange(work, out):  # out is the new output now; work holds the old one
        shutil.rmtree(work)
    else:
        aside = out.with_name(f".{out.name}.old{os.getpid()}")
        os.replace(out, aside)
        os.replace(work, out)
        shutil.rmtree(aside)
    for p in sweep(out.parent, out.name, kept=True):
        if log:
            log(f"  removed {p}: a failed run's kept work directory, superseded by this output")
    return out


def size_of(path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file() and not f.is_symlink())


def keep_failed(work, min_free: int = MIN_FREE_BYTES) -> str:
    """Keep a failed run's work directory (marked KEPT) if the disk keeps room; a sentence saying which."""
    work = Path(work)
    held = size_of(work)
    if shutil.disk_usage(work.parent).free < min_free:
        shutil.rmtree(work, ignore_errors=True)
        return (f"its work directory ({held / 1e6:,.0f} MB) was deleted: the disk has less than "
                f"{min_free / 1e9:.0f} GB free")
    (work / KEPT).write_text("kept for inspection after a failure; delete it when done\n")
    return f"its work directory is kept at {work} ({held / 1e6:,.1f} MB)"
