"""Start torchrun on this machine from Python (a notebook, a test) with a hard timeout and no process left behind."""

from __future__ import annotations

import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

__all__ = ["LaunchResult", "launch"]


@dataclass
class LaunchResult:
    """What a torchrun launch did.

    Attributes:
        returncode: torchrun's exit status (0: every process finished without an error).
        output: Everything the processes printed (stdout and stderr, in arrival order).
        seconds: Wall-clock time from the start of torchrun to the end of the last process.
        command: The command that ran.
    """

    returncode: int
    output: str
    seconds: float
    command: list[str] = field(default_factory=list)

    def tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of the output."""
        return "\n".join(self.output.rstrip().splitlines()[-lines:])


def launch(
    target: str | Path,
    *args: object,
    nproc: int = 2,
    threads: int | None = None,
    timeout: float = 300.0,
    module: bool = False,
    env: dict[str, str] | None = None,
    echo: bool = True,
    check: bool = True,
) -> LaunchResult:
    """Run a script (or module) in ``nproc`` processes with ``torchrun --standalone``, this machine only.

    It runs ``python -m torch.distributed.run`` of this very Python (so a virtual environment's torch is the
    one used), prints the processes' output as it arrives, and stops everything it started when the time is
    up or the cell is interrupted: first gently (torchrun passes the signal on to its processes), then by
    force, the worker processes included. Functions defined in a notebook cannot be started in new processes
    (they cannot be imported there), which is why the code to run lives in a file or a module.

    Args:
        target: The script's path, or a module's name with ``module=True``.
        *args: Command-line arguments for the script.
        nproc: Processes to start (``--nproc_per_node``).
        threads: CPU threads per process (``OMP_NUM_THREADS``); default: the CPU cores shared out, at least 1,
            so processes x threads never exceeds the cores (more would make them compete for the cores).
        timeout: Seconds before everything is stopped and TimeoutError is raised.
        module: ``target`` is a module name, run as ``python -m target``.
        env: More environment variables for the processes.
        echo: Print the output while it arrives, under a bar of the seconds spent out of ``timeout``.
        check: Raise RuntimeError when torchrun exits with an error.

    Returns:
        A LaunchResult with the return code, the output and the time taken.

    Raises:
        TimeoutError: The processes did not finish within ``timeout`` seconds (they have been stopped).
        RuntimeError: With ``check``, a process failed; the message ends with the last lines of output.
    """
    if nproc < 1:
        raise ValueError(f"nproc must be at least 1, got {nproc}")
    threads = threads or max(1, (os.cpu_count() or 1) // nproc)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    command += (["-m"] if module else []) + [str(target), *map(str, args)]
    child_env = {**os.environ, "OMP_NUM_THREADS": str(threads), **(env or {})}
    # Unbuffered, print writes a line's text and its newline separately, and the lines of several processes
    # get mixed up; buffered, print(..., flush=True) writes the whole line at once.
    child_env.pop("PYTHONUNBUFFERED", None)
    loopback = _loopback_interface()
    if loopback and "GLOO_SOCKET_IFNAME" not in child_env:
        child_env["GLOO_SOCKET_IFNAME"] = loopback  # all processes are on this machine: talk over loopback
    if sys.platform == "win32":
        child_env.setdefault("USE_LIBUV", "0")  # Windows builds of torch lack libuv for torchrun's store
        options = {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    else:
        options = {"start_new_session": True}  # its own process group, so it can be stopped as a whole
    start = time.monotonic()
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
        errors="replace",
        env=child_env,
        **options,
    )
    lines: list[str] = []
    arrived: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, arrived), daemon=True).start()
    deadline = start + timeout
    clock = _clock(nproc, timeout) if echo else None  # seconds so far, so a quiet start does not look stuck
    try:
        while True:
            if time.monotonic() >= deadline:
                raise queue.Empty
            if clock is not None:
                clock.update(int(time.monotonic() - start) - clock.n)
            try:
                line = arrived.get(timeout=min(1.0, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                continue  # no line this second: look at the clock again
            if line is None:
                break
            lines.append(line)
            if echo:
                print(line, end="", flush=True)
        proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except (queue.Empty, subprocess.TimeoutExpired):
        _stop(proc, grace=3.0)
        tail = "".join(lines[-15:])
        raise TimeoutError(
            f"the {nproc} process(es) did not finish within {timeout:.0f} s, and were stopped. A process "
            "that waits for another is the usual cause: see the "
            "troubleshooting table of notebook 09 (TORCH_DISTRIBUTED_DEBUG=DETAIL says more).\n"
            f"Last output:\n{tail}"
        ) from None
    except BaseException:  # KeyboardInterrupt (the notebook's stop button) and anything else
        _stop(proc, grace=10.0)
        raise
    finally:
        if clock is not None:  # seconds spent, at most the limit (stopping the processes takes longer)
            clock.update(min(clock.total, int(time.monotonic() - start)) - clock.n)
            clock.close()
    result = LaunchResult(proc.returncode, "".join(lines), time.monotonic() - start, command)
    if check and result.returncode != 0:
        raise RuntimeError(f"torchrun exited with status {result.returncode}. Last output:\n{result.tail()}")
    return result


def _clock(nproc: int, timeout: float):
    """A progress bar of the seconds spent, out of the time limit (a widget in a notebook, text elsewhere)."""
    from tqdm.auto import tqdm

    return tqdm(
        total=max(1, round(timeout)),
        desc=f"torchrun, {nproc} process(es): seconds of the {timeout:.0f} s limit",
        unit="s",
        bar_format="{l_bar}{bar}| {n}/{total} s",  # no ETA: the limit is not a forecast
    )


def _pump(stream: IO[str] | None, into: queue.Queue[str | None]) -> None:
    # Reads in a thread, so the caller can keep time while no line arrives.
    if stream is not None:
        for line in stream:
            into.put(line)
        stream.close()
    into.put(None)  # the end: every process holding the pipe has closed it


def _loopback_interface() -> str | None:
    try:
        names = {name for _, name in socket.if_nameindex()}
    except (OSError, AttributeError):
        return None
    return next((name for name in ("lo", "lo0") if name in names), None)


def _descendants(pid: int) -> list[int]:
    """Every process started by ``pid``, directly or not (torchrun's workers have their own sessions)."""
    children: dict[int, list[int]] = {}
    try:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(entry.name))
    except OSError:  # no /proc (macOS): ask ps
        try:
            table = subprocess.run(["ps", "-A", "-o", "pid=", "-o", "ppid="], capture_output=True, text=True)
        except OSError:
            return []
        for row in table.stdout.split("\n"):
            if len(row.split()) == 2:
                child, parent = map(int, row.split())
                children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _stop(proc: subprocess.Popen, grace: float) -> None:
    """Stop torchrun and its workers: SIGINT first (torchrun passes it on to them), then SIGKILL to all."""
    if sys.platform == "win32":
        subprocess.run(["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True)
        proc.wait()
        return
    workers = _descendants(proc.pid)  # found now: once torchrun is gone they are no longer its children
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            pass
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in workers:
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):  # already gone
            pass
    proc.wait()
