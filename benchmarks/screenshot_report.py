"""Render the main job's report.html in headless Chromium and save a screenshot to look at.

    python benchmarks/screenshot_report.py [--report out/report.html] [--png out/report.png]

Needs Debian's chromium (`apt-get install chromium`). The page is self-contained
(plots embedded as data URIs), so the screenshot shows exactly what a reader sees.
"""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--report", default="out/report.html")
    ap.add_argument("--png", default="out/report.png")
    ap.add_argument("--height", type=int, default=4200)
    args = ap.parse_args()
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        sys.exit("no chromium on PATH: apt-get install chromium")
    report = Path(args.report).resolve()
    if not report.is_file():
        sys.exit(f"{report} does not exist: run `spikeacc run` first")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={Path(args.png).resolve()}", f"--window-size=1100,{args.height}",
                    report.as_uri()], check=True, capture_output=True, timeout=120)
    print(f"wrote {args.png}")


if __name__ == "__main__":
    raise SystemExit(main())
