"""The hardware-faithful path's integers do not depend on the CPU's float kernels (issue #26).

Machines of the project's kind differ in vector units (AVX2 or AVX-512), and
torch and MKL pick kernels by them; float32 results then differ in their last
bits, enough to move activation codes. The golden model's float side runs in
float64, so every code (weights, mantissas, shifts, exponents, thresholds,
spike counts) comes out the same under two thread counts and both kernel sets,
with and without the offline rotations and the corpus calibration.
The float32 run is the control that shows the kernel switch really changes
the arithmetic.
"""

import concurrent.futures
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HELPER = Path(__file__).with_name("portable_codes.py")
AVX2 = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}


def digest(dtype: str, threads: int, variant: str = "plain", **env) -> dict:
    run = subprocess.run([sys.executable, str(HELPER), dtype, "2", "128", variant], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **env},
                         timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() != "AVX512",
                    reason="needs a CPU with AVX-512, so that AVX2 kernels are a second kernel set")
def test_hardware_faithful_codes_are_the_same_under_two_thread_counts_and_two_kernel_sets():
    runs = {"reference": ("float64", 2, "plain", {}), "1 thread": ("float64", 1, "plain", {}),
            "AVX2 kernels": ("float64", 2, "plain", AVX2),
            "rotated": ("float64", 2, "rotated", {}), "rotated, 1 thread": ("float64", 1, "rotated", {}),
            "rotated, AVX2 kernels": ("float64", 2, "rotated", AVX2),
            "float32": ("float32", 2, "plain", {}), "float32 AVX2": ("float32", 2, "plain", AVX2)}
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:   # independent processes, two at once
        got = dict(zip(runs, pool.map(lambda run: digest(*run[:3], **run[3]), runs.values())))
    for reference, others in (("reference", ("1 thread", "AVX2 kernels")),
                              ("rotated", ("rotated, 1 thread", "rotated, AVX2 kernels"))):
        assert got[others[1]]["capability"] == "AVX2" and got[others[0]]["threads"] == 1
        changed = [name for name in others if got[name]["digest"] != got[reference]["digest"]]
        assert not changed, f"hardware-faithful codes differ from 2 threads/AVX-512 under: {changed}"
    assert got["rotated"]["digest"] != got["reference"]["digest"], "the rotated run computed the plain codes"
    # the control: in float32 the same switch of kernels changes the codes
    assert got["float32"]["digest"] != got["float32 AVX2"]["digest"], \
        "the kernel switch did not change float32 codes: this test would not see a portability bug"
