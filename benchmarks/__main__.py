"""Run every benchmark module (``benchmarks/bench_*.py``) and rewrite ``benchmarks/RESULTS.md``.

Usage: ``python -m benchmarks [NAME[:ARG...] ...]`` (names like ``text`` or ``vision``; default all). Rows of
modules that are not run are kept from the previous RESULTS.md, so one module can be re-measured
without re-running the rest. Arguments after a name go to its ``run()`` as strings, in order
(``nrccr:demo-world:1``: world demo-world, one torch thread); a section then keeps the blocks its module
wrote with other arguments, each under its own "Measured ... Command:" lines.
"""
from __future__ import annotations

import datetime as dt
import importlib
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
SECTION = re.compile(r"^## (\w+)\n(.*?)(?=^## |\Z)", re.S | re.M)


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}){mem}, Python {platform.python_version()}"


def commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def render(name: str, rows, seconds: float, args: tuple[str, ...] = ()) -> str:
    today = dt.date.today().isoformat()
    lines = [f"## {name}", "", f"Measured {today} on {machine()}, commit {commit()}, in {seconds:.0f} s.",
             f"Command: `python -m benchmarks {':'.join((name, *args))}`", "",
             "| measurement | value | unit | target | met | how |", "|---|---|---|---|---|---|"]
    for r in rows:
        met = "" if r.met is None else ("yes" if r.met else "**no**")
        value = f"{r.value:.4g}" if isinstance(r.value, float) else str(r.value)
        lines.append(f"| {r.name} | {value} | {r.unit} | {r.target} | {met} | {r.note} |")
    return "\n".join(lines) + "\n\n"


BLOCK = re.compile(r"^Measured .*?(?=^Measured |\Z)", re.S | re.M)
COMMAND = re.compile(r"^Command: `(.*?)`", re.M)


def merge(previous: str | None, new: str) -> str:
    """A section's new text (``## name`` + its blocks), keeping the previous section's blocks whose command differs."""
    if previous is None:
        return new
    commands = set(COMMAND.findall(new))
    kept = [b for b in BLOCK.findall(previous) if not set(COMMAND.findall(b)) & commands]
    return new + "".join(b.rstrip("\n") + "\n\n" for b in kept)


def main(argv: list[str]) -> int:
    available = sorted(p.stem[len("bench_"):] for p in HERE.glob("bench_*.py"))
    calls = [(spec.split(":")[0], tuple(spec.split(":")[1:])) for spec in argv] or [(name, ()) for name in available]
    wanted = [name for name, _ in calls]
    unknown = set(wanted) - set(available)
    if unknown:
        print(f"unknown benchmark(s) {sorted(unknown)}; available: {available}", file=sys.stderr)
        return 2
    measured: dict[str, str] = {}
    failed = []
    for name, args in calls:
        print(f"== {':'.join((name, *args))}", flush=True)
        start = time.perf_counter()
        try:
            rows = importlib.import_module(f"benchmarks.bench_{name}").run(*args)
        except Exception as exc:  # one broken benchmark must not hide the others
            failed.append(name)
            print(f"   failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        measured[name] = merge(measured.get(name), render(name, rows, time.perf_counter() - start, args))
        for r in rows:
            print(f"   {r.name}: {r.value:.4g} {r.unit} {r.target} {'' if r.met is None else ('met' if r.met else 'NOT MET')}")
    header = ("# Benchmark results\n\nWritten by `python -m benchmarks` (or `make bench`); each section says when, on what machine "
              "and at which commit it was measured. Targets are from the project's issues.\n\n")
    from ccr_core.io import file_lock, write_text_atomic

    # Merge into the file as it is now, not as it was at start: a second `python -m benchmarks NAME`
    # that finished meanwhile keeps its section (reading at start once lost three sections that way).
    with file_lock(RESULTS.with_name(".RESULTS.md.lock")):
        previous = dict(SECTION.findall(RESULTS.read_text(encoding="utf-8"))) if RESULTS.exists() else {}
        sections = {k: f"## {k}\n{v}" for k, v in previous.items()}
        sections.update({k: merge(sections.get(k), v) for k, v in measured.items()})
        write_text_atomic(RESULTS, header + "".join(sections[k] for k in sorted(sections)))
    print(f"wrote {RESULTS}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
