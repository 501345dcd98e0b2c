"""The record module: the convergence rule on learning curves, the converged budget, the one table filter, and
publishing that never replaces a committed record silently."""
from __future__ import annotations

import re

import pytest

from ccr_core.io import read_json, write_json_atomic
from ccr_core.paths import REPO_ROOT
from ccr_core.study import records
from ccr_core.study.grid import PROTOCOL


def _curve(values, every=10):
    return [{"step": every * (i + 1), "target_sumr": v} for i, v in enumerate(values)]


def _record(method="uml", seed=0, sumr=400.0, steps=100, curve=None, setting="common", noise=0.0):
    return {"world": "demo-world", "setting": setting, "method": method, "noise_rate": noise, "seed": seed, "noise_seed": 0,
            "groups": {"de": {"SumR": sumr}}, "scored": {"checkpoint": "end of budget", "steps": steps},
            "budget": {"steps": steps, "train_seconds": 1.0}, **({"curve": curve} if curve is not None else {})}


def test_convergence_rule_reads_the_last_quarter_of_the_budget():
    rising = _curve([100, 200, 300, 400])  # steps 10..40; from 30 to 40: +33%
    flat = _curve([100, 300, 400, 402])  # from 30 to 40: +0.5%
    assert records.late_gain(records.curve_values(rising)) == pytest.approx(100 / 300)
    assert records.converged(rising) is False and records.converged(flat) is True
    assert records.converged(rising, budget=20) is False  # 15 -> 20: 150 -> 200
    assert records.value_at(records.curve_values(rising), 15) == pytest.approx(150.0)  # linear between points
    assert records.converged(_curve([100, 200])) is None  # too few points to tell
    assert records.convergence_mark(_record(curve=rising)) == "not converged" and records.convergence_mark(_record()) == "no curve"


def test_converged_budget_is_the_smallest_at_which_every_curve_has_flattened():
    fast = _curve([300, 400, 401, 401, 401, 401, 401, 401, 401, 401])
    slow = _curve([100, 200, 300, 350, 380, 399, 402, 403, 404, 404])
    budget, own = records.converged_budget({"fast": fast, "slow": slow})
    # fast at 30: v(22.5) = 400.25 -> 401 is +0.19%; at 20: v(15) = 350 -> 400 is +14%
    # slow at 90: v(67.5) = 401.25 -> 404 is +0.69%; at 80: v(60) = 399 -> 403 is +1.003%, just over the rule
    assert own == {"fast": 30, "slow": 90} and budget == 90
    assert records.converged_budget({"fast": fast, "never": _curve([100, 200, 300, 400, 500])})[0] is None


def test_the_table_filter_keeps_one_scored_budget_and_never_by_outcome():
    steps = PROTOCOL["demo-world"].steps
    rows = [_record("uml", s, sumr=300.0 + 100 * s, steps=steps) for s in (0, 1, 2)]
    rows += [_record("uml", 0, sumr=999.0, steps=steps * 2), {**_record("cl2cm", 0, steps=steps), "scored": {"checkpoint": "best validation epoch", "steps": steps}}]
    kept = records.for_tables(rows, "demo-world")
    assert [r["seed"] for r in kept] == [0, 1, 2] and records.mixed_budgets(kept) == {steps}  # the low seed stays too
    # the baseline is the floor's model in the common setting: its rows there are not table rows
    assert records.for_tables([_record("baseline", s, steps=steps) for s in (0, 1, 2)], "demo-world") == []
    assert len(records.for_tables([_record("baseline", s, steps=steps, setting="published") for s in (0, 1, 2)], "demo-world")) == 3
    # a cell still filling is in no table: never shown with some of its runs
    assert records.for_tables([_record("baseline", s, steps=steps, setting="published") for s in (0, 1)], "demo-world") == []
    # a cell with a second noise draw needs both draws of every seed
    drawn = [{**_record("floor", s, steps=steps, noise=0.4), "noise_seed": d} for s in (0, 1, 2) for d in (0, 1)]
    assert len(records.for_tables(drawn, "demo-world")) == 6 and records.for_tables(drawn[:-1], "demo-world") == []


@pytest.mark.parametrize("world", sorted(PROTOCOL))
def test_no_committed_table_mixes_scored_steps(world):
    for kind in ("protocol", "ablations", "fine-tuned"):
        assert len(records.mixed_budgets(records.table_records(records.load(kind, world), PROTOCOL[world].steps))) <= 1
    assert len(records.mixed_budgets(records.world_table_records("protocol", world))) <= 1


@pytest.mark.parametrize("world", sorted(PROTOCOL))
def test_every_committed_grid_and_pilot_record_has_a_learning_curve(world):
    """Issue 29's target: every record in results/protocol-*.json (and the pilot's) has a curve of at least 3 points,
    so the convergence rule can judge it."""
    for kind in ("protocol", "pilot"):
        short = [(r["method"], r["setting"], r["noise_rate"], r["seed"]) for r in records.load(kind, world)
                 if len(records.curve_values(r)) < 3]
        assert not short, f"{kind}-{world}.json: records without a curve of 3 points: {short[:5]}"


def test_results_md_tables_each_hold_one_scored_budget():
    """Every RESULTS.md table with a "scored steps" column prints one step count in it, per world section."""
    text = (REPO_ROOT / "RESULTS.md").read_text(encoding="utf-8")
    checked = 0
    for section in re.split(r"\n### ", text):
        lines = section.splitlines()
        for i, line in enumerate(lines):
            if line.startswith("|") and "scored steps" in line:
                column = [c.strip() for c in line.strip("|").split("|")].index("scored steps")
                values = set()
                for row in lines[i + 2:]:
                    if not row.startswith("|"):
                        break
                    cells = [c.strip() for c in row.strip("|").split("|")]
                    if len(cells) > column and cells[column]:
                        values.add(cells[column])
                assert len(values) <= 1, f"a table mixes scored steps {values}: {line}"
                checked += 1
    assert checked >= 1


def test_publish_adds_new_records_keeps_equal_ones_and_refuses_to_change_committed_ones(tmp_path):
    workspace, repo = tmp_path / "ws", tmp_path / "repo"
    committed = [_record("uml", 0, 400.0), _record("uml", 1, 410.0)]
    write_json_atomic(records.record_path("protocol", "demo-world", repo), committed)
    before = (records.record_path("protocol", "demo-world", repo)).read_bytes()
    # a rerun with another thread count moved a number in the last digit: a conflict, nothing written
    rerun = [{**_record("uml", 0, 400.02), "budget": {"steps": 100, "train_seconds": 9.0}}, _record("uml", 2, 420.0)]
    write_json_atomic(records.record_path("protocol", "demo-world", workspace), rerun)
    with pytest.raises(records.PublishConflict, match=r"(?s)1 committed record\(s\) would change.*Nothing was written"):
        records.publish("protocol", "demo-world", source=workspace, target=repo)
    assert records.record_path("protocol", "demo-world", repo).read_bytes() == before
    # a record equal but for its measured times is the same result: kept as committed, the new seed added
    same = [{**_record("uml", 0, 400.0), "budget": {"steps": 100, "train_seconds": 9.0}}, _record("uml", 2, 420.0)]
    write_json_atomic(records.record_path("protocol", "demo-world", workspace), same)
    records.publish("protocol", "demo-world", source=workspace, target=repo)
    merged = read_json(records.record_path("protocol", "demo-world", repo))
    assert [(r["seed"], r["groups"]["de"]["SumR"], r["budget"]["train_seconds"]) for r in merged] == [(0, 400.0, 1.0), (1, 410.0, 1.0), (2, 420.0, 1.0)]
    # asked for explicitly, the changed record replaces the committed one
    write_json_atomic(records.record_path("protocol", "demo-world", workspace), rerun)
    records.publish("protocol", "demo-world", replace=True, source=workspace, target=repo)
    assert [r["groups"]["de"]["SumR"] for r in read_json(records.record_path("protocol", "demo-world", repo))] == [400.02, 410.0, 420.0]
    # records of another budget are other runs: both kept
    write_json_atomic(records.record_path("protocol", "demo-world", workspace), [_record("uml", 0, 450.0, steps=200)])
    records.publish("protocol", "demo-world", source=workspace, target=repo)
    assert len(read_json(records.record_path("protocol", "demo-world", repo))) == 4


def test_the_leaderboard_plots_the_pilot_curves_in_the_family_colours(tmp_path, monkeypatch):
    """The Leaderboard's learning-curve plot reads the repository's pilot records through the record module: one line
    per run, the method's family colour, dashed at noise, the grid's budget as a dotted line; none without curves."""
    from types import SimpleNamespace

    from ccr_core import paths
    from ccr_core.dashboard import leaderboard
    from ccr_core.dashboard.colours import FAMILY_COLOURS

    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path)
    world = SimpleNamespace(name="demo-world")
    assert leaderboard.curve_plot(world) is None
    runs = [_record("uml", curve=_curve([100, 200, 300])), _record("nrccr", curve=_curve([50, 90, 120]), noise=0.4), _record("cl2cm")]
    write_json_atomic(tmp_path / "results" / "pilot-demo-world.json", runs)
    fig = leaderboard.curve_plot(world)
    lines = {t.name: t for t in fig.data}
    assert set(lines) == {"uml", "nrccr @ 0.4 noise"}  # the run without a curve draws nothing
    assert lines["uml"].line.color == FAMILY_COLOURS["uml"] and lines["uml"].line.dash == "solid"
    assert lines["nrccr @ 0.4 noise"].line.color == FAMILY_COLOURS["nrccr"] and lines["nrccr @ 0.4 noise"].line.dash == "dash"
    assert list(lines["uml"].y) == [100, 200, 300] and list(lines["uml"].x) == [10, 20, 30]
    assert any(s.x0 == PROTOCOL["demo-world"].steps for s in fig.layout.shapes)


def test_the_pilot_section_states_the_budget_and_the_orders_the_budget_decides(monkeypatch):
    """RESULTS.md's pilot section: 'not run yet' without records; with records, the values at the old and later budgets,
    each run's late gain at the old budget, the runs still gaining there, the order of the methods at the old budget and
    at the converged one (a flip marked), and the converged budget once every pilot run is in."""
    from ccr_core.study import report

    proto = PROTOCOL["demo-world"]
    every, steps = proto.eval_every, proto.earlier_steps or proto.steps  # the budget whose verdicts the pilot checks
    assert "**Not run yet** (" in "\n".join(report.pilot_markdown("demo-world", []))
    n = proto.pilot_steps // every
    fast = [500.0 - 400.0 / (i + 1) ** 4 for i in range(n)]  # flat early: 100, 475, 495, 498.4 (step 164), ...
    slow = [min(600.0, 100.0 + 40.0 * i) for i in range(n)]  # 100 ... 580 at step 533, then flat at 600
    runs = [_record("one_to_k", curve=_curve(fast, every)), _record("nrccr", curve=_curve(slow, every))]
    text = "\n".join(report.pilot_markdown("demo-world", runs))
    assert "2 of " in text and "**Budget not chosen yet**" in text
    assert "these pilot runs were still gaining more than 1%: nrccr (common, noise 0)." in text  # one_to_k flat at 164
    if proto.earlier_steps:  # the protocol has moved on: the section says so, and still judges the earlier budget
        assert f"At the grid's earlier budget ({steps:,} steps; it now runs {proto.steps:,})" in text
    old_order = f"one_to_k {records.value_at(records.curve_values(runs[0]), steps):.0f} > nrccr"
    assert f"| common | 0 | {old_order}" in text and "**changed**" in text  # nrccr first once trained long enough
    # every planned pilot run in: the converged budget is chosen (the slow curve's)
    monkeypatch.setattr(report, "pilot_runs", lambda world: [None, None])
    text = "\n".join(report.pilot_markdown("demo-world", runs))
    chosen, own = records.converged_budget({k: r for k, r in zip(("a", "b"), runs)})
    assert chosen == own["b"] > steps and f"**Converged budget**: {chosen:,} steps" in text


@pytest.mark.parametrize("extra", [[], ["--pilot"], ["--ablations"], ["--fine-tuned"]])
def test_publish_trains_nothing(monkeypatch, extra):
    """`--world W --publish` puts the workspace's records into the repository; it never starts the grid (it once ran the
    whole grid before publishing)."""
    from ccr_core import experiments

    def must_not_run(*args, **kwargs):
        raise AssertionError("publishing started training")

    for name in ("run_grid", "run_pilot", "run_ablations", "run_fine_tuned", "ship"):
        monkeypatch.setattr(experiments, name, must_not_run)
    published = []
    monkeypatch.setattr(experiments, "publish", lambda worlds, replace=False: published.append(list(worlds)) or [])
    monkeypatch.setattr(experiments, "write_results_md", lambda: "RESULTS.md")
    monkeypatch.setattr(experiments, "write_readme_table", lambda: "README.md")
    assert experiments.main(["--world", "demo-world", "--publish", *extra]) == 0
    assert published == [["demo-world"]]


def test_find_by_config_looks_in_every_kind_and_sees_a_file_change(tmp_path):
    cfg = {"method": "uml", "seed": 0, "steps": 100}
    first = {**_record(sumr=401.0), "train_config": cfg}
    later = {**_record(sumr=402.0), "train_config": cfg}
    write_json_atomic(records.record_path("ablations", "demo-world", tmp_path), [first, later])
    path, found = records.find_by_config("demo-world", "common", "", cfg, tmp_path)
    assert path.name == "ablations-demo-world.json" and found["groups"]["de"]["SumR"] == 401.0  # the first record wins
    assert records.find_by_config("demo-world", "published", "", cfg, tmp_path) is None  # another setting
    assert records.find_by_config("demo-world", "common", "", {**cfg, "seed": 1}, tmp_path) is None  # another config
    write_json_atomic(records.record_path("ablations", "demo-world", tmp_path), [{**first, "train_config": {**cfg, "seed": 1}}])
    assert records.find_by_config("demo-world", "common", "", cfg, tmp_path) is None  # the file changed: read again
