"""Verilog generation: module names carry the configuration; a JSON manifest records it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from amaranth.back import verilog

from spikeacc.workdirs import write_atomic
from spikeacc.config import SpikeConfig
from spikeacc.hw import registry
from spikeacc.hw.datasheet import datasheet_facts, port_facts, tile_timing_manifest

__all__ = ["GeneratedDesign", "generate", "module_name", "port_list",
           "write_if_changed"]


@dataclass(frozen=True)
class GeneratedDesign:
    design: str
    top: str
    verilog: Path
    manifest: Path


def module_name(design: str, cfg: SpikeConfig) -> str:
    """Top-level Verilog module name, e.g. ``spikeacc_pe_w4a4o4s7f16_k64n16p4l2``."""
    return f"spikeacc_{design}_{cfg.tag}"


def port_list(signature) -> list[dict]:
    """Every top-level Verilog port of a component's ``signature``: name, direction, width, in order.

    ``clk`` and ``rst`` come first: Amaranth adds them for the ``sync`` domain
    every spikeacc design uses (synchronous, active-high reset). The bit
    layouts are in :func:`~spikeacc.hw.datasheet.port_facts`.
    """
    return [{key: port[key] for key in ("name", "direction", "width")} for port in port_facts(signature)]


def write_if_changed(path: Path, text: str) -> Path:
    """Keep the file (and its mtime) when nothing changed, so simulator builds stay incremental."""
    if not path.is_file() or path.read_text() != text:
        write_atomic(path, text)    # whole or not at all: a full disk leaves the old file, not a truncated one
    return path


def generate(design: str, cfg: SpikeConfig, out_dir: str | Path) -> GeneratedDesign:
    """Write ``<top>.v`` and ``<top>.json`` (config, derived widths, ports, datasheet) into ``out_dir``."""
    declared = registry.design(design)
    component = declared.component(cfg)
    top = module_name(design, cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(component, name=top, emit_src=False)
    v_path = out_dir / f"{top}.v"
    write_if_changed(v_path, text)
    manifest = {
        "design": design,
        "top": top,
        "config": cfg.to_dict(),
        "derived": cfg.derived(),
        "ports": port_list(component.signature),
        "clock": "clk",
        "reset": "rst (synchronous, active high)",
    }
    if declared.is_tile:
        manifest["timing"] = tile_timing_manifest(declared, component)
    manifest["datasheet"] = datasheet_facts(declared, cfg, component, top)
    j_path = out_dir / f"{top}.json"
    write_if_changed(j_path, json.dumps(manifest, indent=2) + "\n")
    return GeneratedDesign(design, top, v_path, j_path)
