"""``python -m benchmarks [name ...]``: run ``benchmarks/bench_<name>.py`` (all of them when
no name is given) and print one table. Exits 1 if a figure misses its target, 2 for an
unknown name."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from benchmarks import Result, format_table


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(
            f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available())}",
            file=sys.stderr,
        )
        return 2
    results: list[Result] = []
    for name in names:
        module = importlib.import_module(f"benchmarks.bench_{name}")
        print(f"running {name} ...", file=sys.stderr, flush=True)
        results.extend(module.run())
    print(format_table(results))
    missed = [r.name for r in results if not r.passed]
    if missed:
        print(f"\n{len(missed)} figure(s) missed their target: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
