"""The GPU check, in one short script (under 5 minutes on a recent GPU).

    python benchmarks/gpu_check.py

With a CUDA device: runs the GPU-marked tests (``pytest -m gpu tests/test_gpu.py``: AMP fp16 with
GradScaler, bf16, CUDA RNG restore, no second copy of the state on the GPU, exact restore on CUDA) and the
overhead benchmark on the GPU (``benchmarks/overhead.py --device cuda``), prints its table and writes it to
``benchmarks/results/overhead_cuda.md``, then the snapshot of a 100M-parameter model against the device's
copy bandwidth (``benchmarks/overhead_scale.py --device cuda``, ``results/overhead_scale_cuda.md``). Exits
non-zero when a test fails or a benchmark breaks.

Without one: says so and exits 0, running nothing.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = "tests/test_gpu.py"
TESTS_TIMEOUT_S = 60  # the three steps together stay under 5 minutes
BENCH_TIMEOUT_S = 110
SCALE_TIMEOUT_S = 90


def main() -> int:
    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed; skipped (nothing run)")
        return 0
    if not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device here (torch.cuda.is_available() is False, torch "
            f"{torch.__version__}); skipped: nothing run, exit 0"
        )
        return 0
    print(f"gpu_check: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, CUDA {torch.version.cuda}")
    t0 = time.perf_counter()
    failed = []
    steps = [
        (
            "GPU tests",
            [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p", "no:randomly", TESTS],
            TESTS_TIMEOUT_S,
        ),
        (
            "overhead benchmark on CUDA",
            [sys.executable, "benchmarks/overhead.py", "--device", "cuda"],
            BENCH_TIMEOUT_S,
        ),
        (
            "snapshot at 100M parameters on CUDA, against the device's copy bandwidth",
            [sys.executable, "benchmarks/overhead_scale.py", "--device", "cuda", "--sizes", "1e8", "--reps", "2",
             "--out", "benchmarks/results/overhead_scale_cuda.md"],
            SCALE_TIMEOUT_S,
        ),
    ]
    for name, cmd, timeout in steps:
        print(f"\n== {name}: {' '.join(cmd[1:])}", flush=True)
        try:
            rc = subprocess.run(cmd, cwd=ROOT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            print(f"gpu_check: {name} ran past {timeout} s and was stopped")
            rc = -1
        if rc != 0:
            failed.append(f"{name} (exit {rc})")
    verdict = "FAILED: " + ", ".join(failed) if failed else "all passed"
    print(f"\ngpu_check: {time.perf_counter() - t0:.0f} s; {verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
