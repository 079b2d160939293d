"""Run training commands side by side (benchmarks): a fixed number at a time, one log file each."""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger(__name__)


def run_in_parallel(commands: Sequence[tuple[list[str], Path]], parallel: int, *, threads: int = 1, poll_seconds: float = 1.0) -> None:
    """Run each ``(argv, output_folder)``, ``parallel`` at a time, with ``threads`` OpenMP / torch threads each
    and progress bars off; a command's output goes to ``<output_folder>.log`` beside its folder. Raises
    ``RuntimeError`` naming the log of the first command that fails."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), TQDM_DISABLE="1")
    pending, running = list(commands), []
    while pending or running:
        while pending and len(running) < parallel:
            command, folder = pending.pop(0)
            folder.parent.mkdir(parents=True, exist_ok=True)
            logger.info("start %s: %s", folder.name, " ".join(command))
            log = open(folder.parent / f"{folder.name}.log", "w")  # noqa: SIM115 - closed when the run ends
            running.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env), log, folder))
        time.sleep(poll_seconds)
        for entry in list(running):
            process, log, folder = entry
            if process.poll() is not None:
                log.close()
                running.remove(entry)
                if process.returncode:
                    raise RuntimeError(f"{folder.name} failed (exit {process.returncode}); see {folder.parent / folder.name}.log")


__all__ = ["run_in_parallel"]
