"""OpenSTA `report_power` beside `spikeacc power`, module by module (combinational logic).

    python benchmarks/sta_crosscheck.py [--power out/power] [--designs tile,mac]

Reads a `spikeacc power` result (power.json, the netlists and SAIF files it
names), runs Debian's OpenSTA on every leaf module annotated from the SAIF
(see `spikeacc.energy.sta_check`) and prints our combinational power against
OpenSTA's, with its internal power counted once per transition.
"""

import argparse
import json
import shutil
import sys
from pathlib import Path

from spikeacc.energy.sta_check import cross_check


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--power", default="out/power", help="a `spikeacc power` output directory")
    ap.add_argument("--designs", default="tile,mac")
    args = ap.parse_args()
    if not shutil.which("sta"):
        sys.exit("OpenSTA not found: apt-get install -y opensta")
    power = json.loads((Path(args.power) / "power.json").read_text())
    print(f"{'design':7} {'module':10} {'ours mW':>9} {'OpenSTA mW':>11} {'ratio':>7}")
    for design in args.designs.split(","):
        if "netlist" not in power["designs"][design]:
            sys.exit(f"{args.power}/power.json predates the netlist path: run `spikeacc power` again")
        rows = cross_check(power["designs"][design], power["tokens"], Path(power["liberty"]))
        for module, r in rows.items():
            print(f"{design:7} {module:10} {r['ours_w'] * 1e3:9.3f} {r['opensta_w'] * 1e3:11.3f} "
                  f"{r['opensta_w'] / r['ours_w'] if r['ours_w'] else float('nan'):7.2f}")
        ours, theirs = sum(r["ours_w"] for r in rows.values()), sum(r["opensta_w"] for r in rows.values())
        print(f"{design:7} {'all':10} {ours * 1e3:9.3f} {theirs * 1e3:11.3f} {theirs / ours:7.2f}")


if __name__ == "__main__":
    main()
