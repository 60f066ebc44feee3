"""End-to-end `lungseg segment` timing and peak memory on a real CT.

    python benchmarks/bench_segment.py ../shared/data/lidc/LIDC-IDRI-0002.nii.gz [--model threshold] [--no-report]

Prints seconds per stage (from CASE.json) and the peak resident memory of the run. Run it on a quiet machine:
it measures wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from lungseg_core.inference.pipeline import segment_case


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ct", type=Path)
    parser.add_argument("--model", default="default")
    parser.add_argument("--no-report", dest="report", action="store_false")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        outcome = segment_case(args.ct, out, lung_model=args.model, infection_model=args.model, report=args.report)
        wall = time.perf_counter() - started
        document = json.loads(outcome.outputs["json"].read_text())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"case {outcome.case}: size {document['input']['geometry']['size_xyz']}")
    for stage, seconds in document["seconds"].items():
        print(f"  {stage:<15} {seconds:8.2f} s")
    print(f"  wall            {wall:8.2f} s")
    print(f"  peak RSS        {peak_mb:8.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
