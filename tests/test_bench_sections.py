"""benchmarks/__main__.py: ``python -m benchmarks NAME:ARG...`` passes arguments to the module's run(), and a
section keeps the blocks its module wrote with other arguments (one block per command)."""
from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # benchmarks/ is a package at the repository root
    sys.path.insert(0, str(REPO))

from benchmarks import __main__ as bench_main  # noqa: E402
from benchmarks.common import Result  # noqa: E402


def test_a_section_keeps_blocks_of_other_commands_and_replaces_its_own():
    old = bench_main.render("nrccr", [Result("flickr row", 1.0, "s")], 1.0)
    demo = bench_main.render("nrccr", [Result("demo row", 2.0, "s")], 1.0, ("demo-world", "1"))
    merged = bench_main.merge(old, demo)
    assert merged.startswith("## nrccr\n") and merged.count("## nrccr") == 1
    assert "Command: `python -m benchmarks nrccr:demo-world:1`" in merged and "Command: `python -m benchmarks nrccr`" in merged
    assert merged.index("demo row") < merged.index("flickr row")
    again = bench_main.merge(merged, bench_main.render("nrccr", [Result("demo row 2", 3.0, "s")], 1.0, ("demo-world", "1")))
    assert "| demo row |" not in again and "demo row 2" in again and "flickr row" in again
    assert again.count("Measured ") == 2


def test_arguments_reach_run(monkeypatch, tmp_path):
    calls = []
    module = type(sys)("benchmarks.bench_fake")
    module.run = lambda *args: calls.append(args) or [Result("x", 1.0, "s")]
    monkeypatch.setitem(sys.modules, "benchmarks.bench_fake", module)
    (tmp_path / "bench_fake.py").write_text("")
    monkeypatch.setattr(bench_main, "HERE", tmp_path)
    monkeypatch.setattr(bench_main, "RESULTS", tmp_path / "RESULTS.md")
    assert bench_main.main(["fake:demo-world:1", "fake"]) == 0
    assert calls == [("demo-world", "1"), ()]
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.count("## fake") == 1 and "benchmarks fake:demo-world:1`" in text and "benchmarks fake`" in text
