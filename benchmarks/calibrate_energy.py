"""Fit the RTL toggle model to gate level, and check it on real vectors it was not fitted on.

    python benchmarks/calibrate_energy.py [--out out/calibration] [--write]

Fits on SmolLM2 block-0 q_proj at its real shape (576→576, P 24, L 2, 8
tokens, exported as the main job does) and checks on down_proj at its real
shape (1536→576, P 24), on both cropped to the default 64×16 tile (P 4) and
on 8 seeded random tokens at that tile. Each set runs `spikeacc power` (gate level) and `spikeacc energy`
(RTL toggles) on the same vectors, both bit-exact. Prints, per set, the
gate-level MAC ÷ spiking ratio (clock and weight memory included), the raw
45 nm toggle model's ratio and the calibrated model's, with their errors.
``--write`` stores the fit, with the check errors, as the shipped
calibration (energy/data/gate_calibration.json).
"""

import argparse
import json
import time
from pathlib import Path

from spikeacc.config import PRESETS, SpikeConfig
from spikeacc.golden.synthetic_vectors import crop_vectors, random_vectors
from spikeacc.golden.vector_export import export_layers
from spikeacc.golden.vectors import load_vectors, save_vectors
from spikeacc.energy.calibration import CALIBRATION_PATH, compare, estimate, fit
from spikeacc.energy.toggles import run_energy
from spikeacc.energy.power import run_power


FIT_ON = "self_attn.q_proj"


def vector_sets(out: Path) -> dict[str, Path]:
    projections = ("self_attn.q_proj", "mlp.down_proj")
    full = export_layers(layers=[f"model.layers.0.{p}" for p in projections], tokens=8,
                         outs=[out / f"{p}.npz" for p in projections],
                         base=PRESETS["smollm2"].with_arithmetic_of(SpikeConfig()))
    sets = dict(zip(projections, full))
    for proj, path in zip(projections, full):
        sets[f"{proj}_k64n16"] = save_vectors(out / f"{proj}_k64n16.npz", crop_vectors(load_vectors(path),
                                                                                      PRESETS["default"]))
    sets["random_k64n16"] = save_vectors(out / "random_k64n16_8tok.npz", random_vectors(SpikeConfig(), 8, seed=0))
    return sets


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/calibration")
    ap.add_argument("--write", action="store_true", help=f"store the fit as {CALIBRATION_PATH}")
    ap.add_argument("--build-dir", default=None)
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = {}
    for name, path in vector_sets(out).items():
        t0 = time.perf_counter()
        power = run_power(path, designs=("tile", "mac"), out=out / name / "power", build_root=args.build_dir).to_dict()
        energy = run_energy(path, out=out / name / "energy", calibrated=False, build_root=args.build_dir).to_dict()
        runs[name] = (power, energy)
        print(f"{name}: gate level and RTL toggles in {time.perf_counter() - t0:.0f} s", flush=True)
    power, energy = runs[FIT_ON]
    calibration = fit(energy, power)
    rows = {}
    for name, (power, energy) in runs.items():
        cfg = power["config"]
        calibrated = {d: estimate(calibration, d, energy["designs"][d], cfg["pes"], power["tokens"])
                      for d in ("tile", "mac")}
        raw = energy["ratio_mac_over_spiking"]["toggles_total_with_weight_memory"]
        rows[name] = {"layer": power["layer"], "vectors": power["vectors"], **compare(calibrated, raw, power)}
    print(f"\n{'vectors':18} {'gate level':>10} {'raw toggles':>12} {'error':>7} {'calibrated':>11} {'error':>7}"
          f" {'spiking E err':>14} {'MAC E err':>10}")
    for name, r in rows.items():
        print(f"{name:18} {r['gate_ratio']:9.2f}x {r['raw_toggle_ratio']:11.2f}x {r['raw_toggle_ratio_error']:+7.0%}"
              f" {r['calibrated_ratio']:10.2f}x {r['calibrated_ratio_error']:+7.0%}"
              f" {r['calibrated_energy_error']['tile']:+14.0%} {r['calibrated_energy_error']['mac']:+10.0%}")
    calibration["fitted"] = rows[FIT_ON]
    checks = [r for n, r in rows.items() if n != FIT_ON]
    calibration["checked"] = max(checks, key=lambda r: abs(r["calibrated_ratio_error"]))  # the worst check
    calibration["checked_all"] = checks
    (out / "gate_calibration.json").write_text(json.dumps(calibration, indent=2) + "\n")
    if args.write:
        CALIBRATION_PATH.parent.mkdir(exist_ok=True)
        CALIBRATION_PATH.write_text(json.dumps(calibration, indent=2) + "\n")
        print(f"wrote {CALIBRATION_PATH}")


if __name__ == "__main__":
    main()
