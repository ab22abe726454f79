"""``python -m benchmarks [--readme] [name ...]``: run ``benchmarks/bench_<name>.py`` (all of
them when no name is given) and print one table; with ``--readme`` also write it into the
README between its benchmark markers. Exits 1 if a figure misses its target, 2 for an
unknown name."""

from __future__ import annotations

import importlib
import sys
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import Result, format_markdown, format_table

README = Path(__file__).resolve().parents[1] / "README.md"
START, END = "<!-- benchmarks:start -->", "<!-- benchmarks:end -->"


def write_readme(results: list[Result]) -> None:
    """Replace the table between the README's markers (figures of the benchmarks run now
    replace theirs; other rows stay)."""
    text = README.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"README.md lacks the markers {START} ... {END}")
    head, _, rest = text.partition(START)
    old, _, tail = rest.partition(END)
    ran = {r.name for r in results}
    kept = [
        line
        for line in old.splitlines()
        if line.startswith("| ")
        and not line.startswith(("| figure", "| ---"))
        and line.split(" | ")[0].removeprefix("| ") not in ran
    ]
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    table = format_markdown(results, when).splitlines()
    body = "\n".join(table[:4] + kept + table[4:])
    README.write_text(f"{head}{START}\n{body}\n{END}{tail}")


def available() -> list[str]:
    return sorted(p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py"))


def main(argv: list[str]) -> int:
    readme = "--readme" in argv
    argv = [a for a in argv if a != "--readme"]
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
    if readme:
        write_readme(results)
        print(f"\nwrote the table into {README.name}")
    missed = [r.name for r in results if not r.passed]
    if missed:
        print(f"\n{len(missed)} figure(s) missed their target: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
