"""A Dask cluster as separate processes on 127.0.0.1, as a user starts one on several machines
(the tests and bench/account.py use it)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


class DaskProcesses:
    """`dask scheduler` and `workers` times `dask worker` (no nanny: one process each, and a
    killed worker stays dead), each its own process."""

    def __init__(self, folder: Path, workers: int = 2):
        self.folder, self.count = folder, workers
        self.processes: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []

    def __enter__(self) -> DaskProcesses:
        dask = str(Path(sys.executable).with_name("dask"))
        scheduler_file = self.folder / "scheduler.json"
        scheduler_file.unlink(missing_ok=True)
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.processes.append(subprocess.Popen(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(scheduler_file)], **quiet))
        deadline = time.monotonic() + 60
        while not scheduler_file.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.address = json.loads(scheduler_file.read_text())["address"]
        self.workers = [subprocess.Popen(
            [dask, "worker", self.address, "--nthreads", "1", "--no-nanny", "--no-dashboard",
             "--host", "127.0.0.1"], **quiet) for _ in range(self.count)]
        self.processes += self.workers
        from distributed import Client

        with Client(self.address, timeout="30s") as client:
            client.wait_for_workers(self.count, timeout=60)
        return self

    def peaks_mib(self) -> list[float]:
        """Each process's peak resident memory (VmHWM): the scheduler's, then each worker's."""
        peaks = []
        for process in self.processes:
            status = Path(f"/proc/{process.pid}/status").read_text()
            peaks += [int(line.split()[1]) / 1024 for line in status.splitlines()
                      if line.startswith("VmHWM:")]
        return peaks

    def __exit__(self, *exc) -> None:
        for process in reversed(self.processes):
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=30)
