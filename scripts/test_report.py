"""After `make test`: the slowest tests of both parts of the suite and the wall-clock time, so the budget
(10 minutes on a 2-core machine, target 6) stays visible. Reads the JUnit XML files pytest wrote."""

from __future__ import annotations

import argparse
import time
from decimal import Decimal
from pathlib import Path
from xml.etree import ElementTree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--slowest", type=int, default=15)
    parser.add_argument("--started", type=int, help="epoch seconds when the run started")
    args = parser.parse_args()

    cases: list[tuple[Decimal, str]] = []
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for file in args.files:
        if not file.exists():
            continue
        root = ElementTree.parse(file).getroot()  # noqa: S314
        for suite in root.iter("testsuite"):
            for key in counts:
                counts[key] += int(suite.get(key, 0))
        for case in root.iter("testcase"):
            name = f"{case.get('classname', '').replace('.', '/')}.py::{case.get('name')}"
            cases.append((Decimal(case.get("time", "0")), name))

    cases.sort(reverse=True)
    print(f"\n===== slowest {args.slowest} tests of the whole suite (set-up + call + tear-down) =====")
    for seconds, name in cases[: args.slowest]:
        print(f"{seconds:7.2f}s  {name}")
    summary = ", ".join(f"{value} {key}" for key, value in counts.items())
    wall = f" in {time.time() - args.started:.0f} s wall-clock" if args.started else ""
    print(f"===== {summary}{wall} =====")


if __name__ == "__main__":
    main()
