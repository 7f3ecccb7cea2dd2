"""Multi-process tests the way ``torchrun`` runs them: ``WORLD`` copies of a test file started as workers on
the loopback interface with gloo, each running scenarios one after another in one process group and writing
what it saw to ``result_rank{r}.json``; the parent reads the results, and a hang fails the test instead of
the suite.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

WORLD = 2
PROCESS_TIMEOUT_S = 120  # only reached by a hang; a healthy launch takes ~10 s on an idle machine
PG_TIMEOUT_S = 30


# -- in a worker ---------------------------------------------------------------------------------------------
def caught(fn: Callable[[], Any]) -> dict[str, Any]:
    """The type and message of what ``fn()`` raised (both ``None`` when it returned)."""
    try:
        fn()
    except Exception as exc:
        return {"type": type(exc).__name__, "message": str(exc)}
    return {"type": None, "message": None}


def scenario(result: dict[str, Any], name: str, fn: Callable[[], Any]) -> None:
    """``result[name] = fn()`` and its duration; a failure is kept as a traceback for the parent to show."""
    start = time.perf_counter()
    try:
        result[name] = fn()
    except Exception:
        result[name] = {"worker_error": traceback.format_exc()}
    result[f"{name}_s"] = round(time.perf_counter() - start, 3)


# -- in the parent -------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(script: str, out: Path) -> list[subprocess.Popen[str]]:
    """Start ``WORLD`` workers of ``script`` (its ``__main__`` takes ``out``) with torchrun's environment."""
    port = _free_port()
    procs = []
    for r in range(WORLD):
        env = {
            **os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(r),
            "LOCAL_RANK": str(r), "WORLD_SIZE": str(WORLD), "LOCAL_WORLD_SIZE": str(WORLD),
            "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1",
        }
        cmd = [sys.executable, script, str(out)]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    return procs


def wait(procs: list[subprocess.Popen[str]], started: float) -> tuple[list[str], list[float]]:
    """Outputs and exit times (``time.time()``); kills every worker and fails on a hang."""
    outputs, exits = [], []
    try:
        for p in procs:
            left = max(1.0, PROCESS_TIMEOUT_S - (time.monotonic() - started))
            outputs.append(p.communicate(timeout=left)[0])
            exits.append(time.time())
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        texts = [p.communicate()[0] for p in procs]
        pytest.fail(f"the workers hung for more than {PROCESS_TIMEOUT_S} s:\n" + "\n".join(texts))
    return outputs, exits


def results(out: Path, outputs: list[str]) -> list[dict[str, Any]]:
    """Each rank's results; fails, with the worker's output, on a missing file or a scenario that raised."""
    found = []
    for r in range(WORLD):
        path = out / f"result_rank{r}.json"
        assert path.exists(), f"rank {r} wrote no result:\n{outputs[r]}"
        res = json.loads(path.read_text())
        for key, value in res.items():
            assert not (isinstance(value, dict) and "worker_error" in value), f"rank {r} {key}: {value}"
        found.append(res)
    return found
