"""The equal-budget study (ccr_core/study/): the grid's budgets, resumable run folders scored at the end of their budget,
intervals and verdicts computed from per-run records, and one tiny grid run end to end."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from ccr_core.study import grid as study_grid
from ccr_core.study import records, report, runner, stats, variants
from ccr_core.study.grid import PROTOCOL, Run, WorldProtocol

from conftest import make_tiny_bundle


@pytest.fixture
def known_epochs(monkeypatch):
    """steps_per_epoch without a built bundle: 82 demo-world and 233 Flickr8k-ML full batches per epoch."""
    monkeypatch.setattr(study_grid, "_EPOCH_STEPS", {("demo-world", 128): 82, ("flickr8k-ml", 128): 233})


def test_every_run_of_a_world_has_the_same_budget_of_whole_epochs(known_epochs):
    for world, proto in PROTOCOL.items():
        runs = study_grid.grid(world)
        configs = [r.train_config() for r in runs]
        assert {c.max_steps for c in configs} == {proto.steps}
        per_epoch = study_grid.steps_per_epoch(world, proto.train["batch_size"])
        assert {c.epochs * per_epoch for c in configs} == {proto.steps}  # the budget ends with an epoch: scored there
        assert {c.targets_per_batch for c in configs} == {0}
        assert all(c.patience > c.epochs for c in configs)  # no early stop: nobody trains less
        assert all(c.method_config.get("head") == "linear" for r, c in zip(runs, configs) if r.setting == "common" and r.method != "floor")
        assert {r.seed for r in runs} == {0, 1, 2}
    assert PROTOCOL["flickr8k-ml"].steps == 9 * 233
    flickr = study_grid.grid("flickr8k-ml")
    assert {r.noise for r in flickr if r.setting == "common"} == {0.0, 0.2, 0.4, 0.6}
    demo = study_grid.grid("demo-world")
    second = [r for r in demo if r.noise_seed == 1]
    assert second and {(r.setting, r.noise) for r in second} == {("common", 0.4)}
    assert {r.train_config().noise_seed for r in second} == {1}


def test_run_folder_names_carry_the_config_and_the_draw(known_epochs, monkeypatch, tmp_path):
    a, b = Run("demo-world", "common", "uml", 0.4, 0), Run("demo-world", "common", "uml", 0.4, 1)
    assert a.folder(tmp_path) != b.folder(tmp_path) and a.folder(tmp_path) == Run("demo-world", "common", "uml", 0.4, 0).folder(tmp_path)
    drawn = Run("demo-world", "common", "uml", 0.4, 0, noise_seed=1)
    assert drawn.folder(tmp_path) != a.folder(tmp_path) and "-draw1-" in drawn.folder(tmp_path).name and "/draw1/" in drawn.label
    before = a.folder(tmp_path)
    monkeypatch.setitem(PROTOCOL, "demo-world", WorldProtocol(**{**PROTOCOL["demo-world"].__dict__, "steps": 100}))
    assert a.folder(tmp_path) != before  # a changed config gets a new folder, the old run is not reused


def test_t_interval_p_value_and_holm_against_references():
    mean, hw = stats.t_interval([1.0, 2.0, 4.0])
    sd = math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    assert mean == pytest.approx(7 / 3) and hw == pytest.approx(scipy_stats.t.ppf(0.975, 2) * sd / math.sqrt(3))
    assert math.isnan(stats.t_interval([5.0])[1])
    rng = np.random.default_rng(0)
    for n in (2, 3, 6):
        x = rng.normal(0.3, 1.0, n)
        assert stats.t_p_value(x) == pytest.approx(scipy_stats.ttest_1samp(x, 0.0).pvalue)
        m, h = stats.t_interval(x)
        assert (m - h > 0 or m + h < 0) == (stats.t_p_value(x) < 0.05)  # the interval and the test agree
    # Holm by hand: sorted p 0.01, 0.02, 0.04, 0.30 times 4, 3, 2, 1, made monotone
    assert stats.holm([0.04, 0.01, 0.30, 0.02]) == pytest.approx([0.08, 0.04, 0.30, 0.06])
    adjusted = stats.holm([0.5, float("nan"), 0.01])
    assert adjusted[0] == pytest.approx(0.5) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)


@pytest.mark.parametrize("mean,hw,n,expected", [
    (3.0, 1.0, 3, "holds"), (-3.0, 1.0, 3, "does not hold"), (0.5, 1.0, 3, "not resolved at 3 seeds"),
    (3.0, float("nan"), 1, "not resolved (1 seed, no interval)"), (0.0, 0.0, 3, "identical in every seed")])
def test_verdict_follows_the_interval(mean, hw, n, expected):
    assert stats.verdict(mean, hw, n) == expected


@pytest.mark.parametrize("mean,hw,n,threshold,expected", [
    (5.4, 8.8, 3, 5.0, "not resolved at 3 seeds"),  # the mean clears the bar, the interval does not
    (-2.8, 2.9, 3, -3.0, "not resolved at 3 seeds"),  # reaches -5.7
    (9.0, 3.0, 3, 5.0, "met"), (1.0, 3.0, 3, 5.0, "not met"), (0.97, 0.01, 3, 0.95, "met"),
    (7.0, float("nan"), 1, 5.0, "not resolved (1 seed, no interval)")])
def test_threshold_verdict_follows_the_interval(mean, hw, n, threshold, expected):
    assert stats.threshold_verdict(mean, hw, n, threshold) == expected


def _result(method, noise, seed, target, en=500.0, auroc=None, setting="common", noise_seed=0, steps=10, best_epoch=2, epochs=2):
    r = {"setting": setting, "method": method, "noise_rate": noise, "seed": seed, "noise_seed": noise_seed,
         "groups": {"en": {"SumR": en}, "de": {"SumR": target}, "zh/human-translation": {"SumR": 1.0}},
         "mrv": {"mrv_mean": 2.0 + seed}, "budget": {"steps": steps, "target_exposures": 100, "train_seconds": 5.0,
                                                     "best_epoch": best_epoch, "epochs": epochs}}
    if auroc:
        r["detectors"] = {name: {"auroc": value, "auprc": 0.5, "precision_at_n_noisy": 0.5} for name, value in auroc.items()}
    return r


def _uml_world():
    results = []
    for seed in (0, 1, 2):
        results += [_result("baseline", 0.0, seed, 400.0 + seed), _result("baseline", 0.4, seed, 300.0 + seed,
                                                                         auroc={"cosine": 0.97 + 0.01 * seed, "pair_loss": 0.9}),
                    _result("uml", 0.0, seed, 400.0 + seed), _result("uml", 0.4, seed, 340.0 + 2 * seed,
                                                                  auroc={"cosine": 0.90 + 0.001 * seed, "pair_loss": 0.9,
                                                                         "uncertainty": 0.5, "mismatch": 0.99})]
    return results


def test_research_answers_pair_runs_and_compare_uml_with_its_own_cosine():
    results = _uml_world()
    table = stats.cells(results)
    share = stats.kept_share(table, "common", "uml", 0.4)
    assert share[1] == pytest.approx(100 * 342 / 401)  # target SumR ignores English and the "/" groups
    text = "\n".join(report.research_answers("demo-world", table))
    line = next(l for l in text.splitlines() if l.startswith("- uml − baseline:"))
    assert "(3 seeds; Holm p " in line and line.endswith("— **holds**")
    own = next(l for l in text.splitlines() if l.startswith("- UML DECL score − UML's own cosine:"))
    assert own.startswith("- UML DECL score − UML's own cosine: difference +0.089 ± 0.00") and own.endswith("**holds**")
    assert "the fair trivial reference is the same model's own cosine, 0.901 ± 0.00" in text
    assert "- UML u − UML's own cosine: difference -0.401" in text


def test_against_floor_says_above_not_resolved_or_below():
    results = []
    for seed in (0, 1, 2):
        results += [_result("floor", 0.0, seed, 400.0 + seed, en=500.0 + seed),
                    _result("baseline", 0.0, seed, 400.0 + seed + (0.5 if seed == 1 else -0.5), en=500.0 + seed),
                    _result("nrccr", 0.0, seed, 380.0 + seed, en=520.0 + seed)]
    lines = report.against_floor(stats.cells(results))
    baseline = next(line for line in lines if line.startswith("| baseline |"))
    nrccr = next(line for line in lines if line.startswith("| nrccr |"))
    assert baseline.count("(not resolved)") == 1 and "(identical)" in baseline and "matches" not in "\n".join(lines)
    assert "-20.0 ± 0.0 (below)" in nrccr and "+20.0 ± 0.0 (above)" in nrccr
    assert report.against_floor(stats.cells([r for r in results if r["method"] != "floor"])) == []


def test_uml_targets_are_met_only_when_the_interval_clears_the_bar():
    results = _uml_world()
    lines = report.uml_targets(stats.cells(results), "demo-world")
    keep = next(l for l in lines if l.startswith("- UML's kept share"))
    # per seed: uml 340+2s over 400+s, baseline 300+s over 400+s -> +9.98, +10.22, +10.45 points
    assert keep.endswith("against the target ≥ +5.0 points — **met**")
    auc = next(l for l in lines if l.startswith("- UML's own detector AUROC"))
    assert auc == "- UML's own detector AUROC: 0.990 ± 0.000 (3 seeds) against the target ≥ 0.950 — **met**"
    wobbly = [dict(r) for r in results]
    for r, bump in zip([r for r in wobbly if r["method"] == "uml" and r["noise_rate"] == 0.4], (-40.0, 0.0, 25.0)):
        r["groups"] = {**r["groups"], "de": {"SumR": r["groups"]["de"]["SumR"] + bump}}
    keep = next(l for l in report.uml_targets(stats.cells(wobbly), "demo-world") if l.startswith("- UML's kept share"))
    assert "**not resolved at 3 seeds**" in keep  # a mean above the bar is not "met"


def test_tables_hold_one_scored_budget_and_records_of_others_are_in_no_table():
    budget = PROTOCOL["flickr8k-ml"].steps
    epochs = budget // 233  # one epoch = 233 steps
    old = _result("one_to_k", 0.0, 0, 400.0, steps=budget, best_epoch=1, epochs=epochs)
    assert records.scored_budget(old) == {"checkpoint": "best validation epoch", "steps": 233, "target_exposures": 100 // epochs}
    assert not records.at_end_of_budget(old) and records.at_end_of_budget(_result("uml", 0.0, 0, 400.0, best_epoch=3, epochs=3))
    other = _result("cl2cm", 0.0, 0, 500.0, steps=1398, best_epoch=6, epochs=6)  # another budget, scored at its end
    results = [_result(m, 0.0, s, 400.0, steps=budget, best_epoch=epochs, epochs=epochs) for m in ("floor", "uml") for s in (0, 1, 2)] + [old, other]
    md = "\n".join(report.protocol_markdown("flickr8k-ml", results))
    assert "(6 of " in md and "Set aside" not in md
    assert "Records of other budgets (233, 1,398 steps) are kept in results/ but are in no table here" in md
    assert f"Every scored model: {budget:,} optimiser steps (recorded)" in md
    assert "| one_to_k |" not in md and "| cl2cm |" not in md  # not in any table
    assert records.mixed_budgets(records.for_tables(results, "flickr8k-ml")) == {budget}
    empty = "\n".join(report.protocol_markdown("flickr8k-ml", [old, other]))  # no run at the budget yet: what is to run
    assert f"(0 of {len(study_grid.grid('flickr8k-ml'))} runs)" in empty and "| one_to_k |" not in empty and "Not run yet" in empty


def test_budget_lines_print_per_language_exposures_as_recorded():
    r = _result("uml", 0.0, 0, 400.0)
    r["scored"] = {"checkpoint": "end of budget", "steps": 699, "target_exposures": 10_000, "exposures_by_language": {"zh": 4000, "de": 2000}}
    text = report.budget_lines("flickr8k-ml", [r])[0]
    assert "699 optimiser steps (recorded)" in text and "de 2,000; zh 4,000" in text


def test_cells_pool_noise_draws_and_report_their_spread():
    results = [_result("baseline", 0.0, s, 400.0) for s in (0, 1)]
    results += [_result("baseline", 0.4, s, 300.0 + d * 4.0, noise_seed=d) for s in (0, 1) for d in (0, 1)]
    table = stats.cells(results)
    cell = table[("common", "baseline", 0.4)]
    assert cell["runs"] == [(0, 0), (0, 1), (1, 0), (1, 1)] and cell["units"] == cell["seeds"] == [0, 1] and cell["draws"] == [0, 1]
    assert stats.draw_spread(cell, "target SumR") == (4.0, 2)
    # the seed is the unit: a seed's two draws are averaged before the interval (302 per seed, not four runs)
    assert cell["per_unit"]["SumR de"] == {0: 302.0, 1: 302.0} and cell["stats"]["SumR de"] == (302.0, 0.0)
    assert set(stats.kept_share(table, "common", "baseline", 0.4)) == {0, 1}  # each seed against its own clean run


def test_merge_results_replaces_a_rerun_and_keeps_the_rest():
    old = [dict(_result("uml", 0.0, s, 400.0), world="w") for s in (0, 1)]
    new = [dict(_result("uml", 0.0, 1, 410.0), world="w")]
    merged = runner.merge_results(old, new)
    assert [(r["seed"], r["groups"]["de"]["SumR"]) for r in merged] == [(0, 400.0), (1, 410.0)]


def test_ablation_and_fine_tuned_tables_say_not_resolved_and_one_seed(known_epochs):
    tau = next(a for a in study_grid.ABLATIONS["flickr8k-ml"] if a.method == "one_to_k")
    results, ablated = [], []
    for seed in (0, 1, 2):
        results += [_result("floor", 0.0, seed, 400.0 + seed, en=500.0 + seed), _result("one_to_k", 0.0, seed, 400.0, en=468.0 + seed)]
        ablated.append({**_result("one_to_k", 0.0, seed, 400.0 + seed, en=499.0 + seed + (0.6 if seed == 1 else -0.3)), "variant": tau.name})
    md = "\n".join(variants.ablation_markdown("flickr8k-ml", results, ablated))
    row = next(line for line in md.splitlines() if line.startswith("| ablation − floor |"))
    assert row.split("|")[3].strip().startswith("-1.0 ±") and "(not resolved)" in row.split("|")[3]
    row = next(line for line in md.splitlines() if line.startswith("| ablation − one_to_k |"))
    assert "+31.0 ±" in row.split("|")[3] and "(above)" in row.split("|")[3]
    assert "Steps the scored models saw: ablation 10; one_to_k 10; floor 10" in md
    grid = [_result(m, 0.0, s, 400.0 + s, en=500.0) for m in ("floor", "uml") for s in (0, 1, 2)]
    tuned = variants.fine_tuned_markdown("flickr8k-ml", grid, [_result("uml", 0.0, 0, 430.0, en=520.0)])
    change = next(line for line in tuned if line.startswith("| uml | change")).split("|")
    header = next(line for line in tuned if line.startswith("| method |")).split("|")
    assert change[header.index(" de SumR ")].strip() == "+30.0 (1 run, no interval)"


def test_tiny_grid_runs_end_to_end_scores_the_end_of_its_budget_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("CCR_WORKSPACE", str(tmp_path / "ws"))
    bundle = make_tiny_bundle(tmp_path / "bundle", n_images=45, langs=("en", "de", "fr"), with_mt=True)
    monkeypatch.setitem(PROTOCOL, "tiny", WorldProtocol(
        train={"batch_size": 4, "lr": 1e-3, "targets_per_batch": 0, "text_backbone": "tiny-text", "visual_backbone": "tiny-visual"},
        steps=5, noise={"common": (0.0, 0.5), "published": (0.0,)}, methods=("floor", "uml"), seeds=(0,), data=str(bundle),
        noise_draws={"common": (0.5,)}, eval_every=2))
    from ccr_core import experiments

    monkeypatch.setattr(records, "repo_results_dir", lambda: tmp_path / "results")
    results = experiments.run_grid("tiny", progress=False)
    assert len(results) == len(study_grid.grid("tiny")) == 2 * 3 + 1  # floor common only; 0.5 in two draws
    for r in results:
        summary = __import__("json").loads((Run("tiny", r["setting"], r["method"], r["noise_rate"], r["seed"], noise_seed=r["noise_seed"])
                                            .folder() / "summary.json").read_text())
        assert r["budget"]["steps"] == summary["steps"] == 5  # recorded, not configured
        assert r["scored"]["checkpoint"] == "end of budget" and r["scored"]["steps"] == 5
        assert sum(r["scored"]["exposures_by_language"].values()) == r["scored"]["target_exposures"] == 5 * 4 * 2
        if summary["best_epoch"] != summary["epochs"]:
            assert r["best_epoch_result"]["steps"] < 5 and set(r["best_epoch_result"]["groups"]) == set(r["groups"])
    draws = {(r["method"], r["noise_seed"]) for r in results if r["noise_rate"] == 0.5}
    assert draws == {("floor", 0), ("floor", 1), ("uml", 0), ("uml", 1)}
    noisy = [r for r in results if r["noise_rate"] == 0.5]
    assert all({"cosine", "pair_loss"} <= set(r["detectors"]) for r in noisy)
    stamps = {r.label: r.folder().joinpath("result.json").stat().st_mtime_ns for r in study_grid.grid("tiny")}
    again = experiments.run_grid("tiny", progress=False)  # everything finished: nothing is retrained or re-evaluated
    assert len(again) == len(results) and (tmp_path / "ws" / "results" / "protocol-tiny.json").exists()
    assert not (tmp_path / "results").exists()  # the grid writes the workspace; only --publish writes results/
    assert all([p["step"] for p in r["curve"]] == [2, 4, 5] for r in results)  # every eval_every steps and at the budget
    assert stamps == {r.label: r.folder().joinpath("result.json").stat().st_mtime_ns for r in study_grid.grid("tiny")}


def test_leaderboard_and_about_read_the_grid(tmp_path, monkeypatch):
    """The Leaderboard tab's intervals and plot, and the About tab's findings, come from results/protocol-<world>.json."""
    from types import SimpleNamespace

    import ccr_core.paths
    from ccr_core.dashboard import about, leaderboard
    from ccr_core.io import write_json_atomic

    results = [_result(m, n, seed, t + seed, auroc={"cosine": 0.9, "pair_loss": 0.9, "uncertainty": 0.5, "mismatch": 0.95} if n else None,
                       setting="published")
               for m in ("baseline", "uml") for n, t in ((0.0, 400.0), (0.4, 300.0)) for seed in (0, 1, 2)]
    write_json_atomic(tmp_path / "results" / "protocol-w.json", results)
    monkeypatch.setattr(ccr_core.paths, "REPO_ROOT", tmp_path)
    if hasattr(about, "REPO_ROOT"):
        monkeypatch.setattr(about, "REPO_ROOT", tmp_path)
    world = SimpleNamespace(name="w", memo={})
    cell = leaderboard._interval(world, SimpleNamespace(method="uml", noise=0.4, fine_tuned=False), "de")
    mean, hw = stats.t_interval([300.0, 301.0, 302.0])
    assert cell == f"{mean:.1f} ± {hw:.1f} (3 seeds)"
    assert leaderboard._interval(world, SimpleNamespace(method="nrccr", noise=0.0, fine_tuned=False), "de") is None  # not in the grid
    # a model with fine-tuned backbone tops: its fine-tuned runs (one seed here), never the frozen grid's cell
    write_json_atomic(tmp_path / "results" / "fine-tuned-w.json", [_result("uml", 0.0, 0, 420.0)])
    tuned = SimpleNamespace(method="uml", noise=0.0, trained=SimpleNamespace(meta={"visual_trainable_blocks": 2}))
    assert leaderboard._interval(world, tuned, "de") == "420.0 (1 seed)"
    assert leaderboard._interval(world, SimpleNamespace(method="baseline", noise=0.0, trained=tuned.trained), "de") is None
    table = leaderboard.interval_table(world)
    assert len(table) == 4 and set(table["seeds"]) == {3} and table.iloc[0]["target SumR"].startswith("401.0 ±")
    assert set(table["converged"]) == {"no curve"}
    # with curves: a run still gaining more than 1% over its budget's last quarter marks its cell, as in RESULTS.md
    for r in results:
        rising = r["method"] == "uml" and r["noise_rate"] == 0.4 and r["seed"] == 0
        r["curve"] = [{"step": st, records.CONVERGENCE_METRIC: v} for st, v in ((5, 300.0 if rising else 400.0), (8, 380.0 if rising else 400.0), (10, 400.0))]
    write_json_atomic(tmp_path / "results" / "protocol-w.json", results)
    world = SimpleNamespace(name="w", memo={})
    marks = {(row["method"], row["train noise"]): row["converged"] for _, row in leaderboard.interval_table(world).iterrows()}
    assert marks == {("baseline", 0.0): "yes", ("baseline", 0.4): "yes", ("uml", 0.0): "yes", ("uml", 0.4): "not converged (1 of 3 runs)"}
    shipped_row = {**results[-3], "protocol": "equal-budget", "scored": {"checkpoint": "end of budget", "steps": 10}}
    assert shipped_row["seed"] == 0 and shipped_row["method"] == "uml" and shipped_row["noise_rate"] == 0.4
    for r in results:
        r["scored"] = {"checkpoint": "end of budget", "steps": 10}
    write_json_atomic(tmp_path / "results" / "protocol-w.json", results)
    uml_model = SimpleNamespace(method="uml", noise=0.4)
    assert leaderboard._converged_cell(world, shipped_row, "published", uml_model) == (
        "not converged (1 of 3 runs); this model's run: not converged")
    assert leaderboard._converged_cell(world, {**shipped_row, "protocol": None}, "published", uml_model) == "not converged (1 of 3 runs)"
    fig = leaderboard.noise_plot(world, "published")
    assert {t.name for t in fig.data} == {"baseline", "uml"} and list(fig.data[0].x) == [0.0, 0.4]
    findings = about.measured_findings(world)
    assert "does UML's detector beat the trivial detectors" in findings and "UML DECL score − UML's own cosine" in findings


def test_two_grid_commands_on_one_workspace_share_the_runs(tmp_path, monkeypatch):
    """A run another process is training (it holds the run folder's lock) is left to it and waited for: it is never
    trained twice in one folder, and both commands end with every run's record."""
    import threading

    from ccr_core.io import file_lock, read_json
    from ccr_core.study import executors

    monkeypatch.setenv("CCR_WORKSPACE", str(tmp_path / "ws"))
    bundle = make_tiny_bundle(tmp_path / "bundle", n_images=45, langs=("en", "de", "fr"), with_mt=True)
    monkeypatch.setitem(PROTOCOL, "tiny", WorldProtocol(
        train={"batch_size": 4, "lr": 1e-3, "targets_per_batch": 0, "text_backbone": "tiny-text", "visual_backbone": "tiny-visual"},
        steps=3, noise={"common": (0.0,), "published": ()}, methods=("floor", "uml"), seeds=(0,), data=str(bundle)))
    first, second = study_grid.grid("tiny")
    holding, release = threading.Event(), threading.Event()

    def other_process():  # holds the second run's lock, trains it, lets go
        with file_lock(second.folder() / executors.RUN_LOCK):
            holding.set()
            release.wait(60)
            runner.run_one(second, runner.Workbenches(progress=False), progress=False)

    other = threading.Thread(target=other_process)
    other.start()
    holding.wait(60)
    ran = []
    real_execute = executors.execute
    monkeypatch.setattr(executors, "execute", lambda spec, *a, **k: ran.append(spec.run.label) or real_execute(spec, *a, **k))
    done = {}
    local = threading.Thread(target=lambda: done.update(executors.LocalExecutor(threads=1).run([first, second], progress=False)))
    local.start()
    while first.label not in ran or not (first.folder() / "result.json").exists():
        local.join(0.2)  # this command trains the first run, then finds the second taken
    release.set()
    local.join(120)
    other.join(120)
    assert ran == [first.label]  # the second run was never started here
    assert executors.attempts(second.folder()) == []  # nor recorded as an attempt of this command
    assert set(done) == {first.label, second.label} and done[second.label] == read_json(second.folder() / "result.json")


def test_the_grid_may_take_fewer_curve_points_than_the_pilot(monkeypatch):
    """grid_eval_every spaces a grid run's curve points; the pilot keeps eval_every (its published curves' spacing)."""
    monkeypatch.setitem(PROTOCOL, "tiny", WorldProtocol(train={"batch_size": 4}, steps=6, noise={"common": (0.0,)}, methods=("floor",),
                                                        seeds=(0,), data="unused", eval_every=2, grid_eval_every=3, pilot_steps=8))
    monkeypatch.setattr(study_grid, "steps_per_epoch", lambda world, batch_size: 2)
    assert Run("tiny", "common", "floor", 0.0, 0).train_config().eval_every == 3
    assert Run("tiny", "common", "floor", 0.0, 0, steps=8).train_config().eval_every == 2
    assert PROTOCOL["flickr8k-ml"].curve_every(False) == PROTOCOL["flickr8k-ml"].eval_every  # unset: the pilot's spacing


def test_a_new_workspace_goes_on_from_the_committed_records(tmp_path, monkeypatch, capsys):
    """Published records survive a lost workspace: in a fresh one the grid restores each committed run instead of
    training it again (a run of another config is not restored), publishing collects run folders of a grid or pilot
    still under way, and a restored run's model is trained again only when it is needed (to ship), with its numbers."""
    bundle = make_tiny_bundle(tmp_path / "bundle", n_images=45, langs=("en", "de", "fr"), with_mt=True)
    monkeypatch.setitem(PROTOCOL, "tiny", WorldProtocol(
        train={"batch_size": 4, "lr": 1e-3, "targets_per_batch": 0, "text_backbone": "tiny-text", "visual_backbone": "tiny-visual"},
        steps=3, noise={"common": (0.0,), "published": ()}, methods=("floor", "uml"), seeds=(0,), data=str(bundle),
        eval_every=2, pilot_steps=4))
    from ccr_core import experiments
    from ccr_core.io import read_json

    monkeypatch.setattr(records, "repo_results_dir", lambda: tmp_path / "results")
    monkeypatch.setenv("CCR_WORKSPACE", str(tmp_path / "first"))
    first, second = study_grid.grid("tiny")
    runner.run_one(first, runner.Workbenches(progress=False), progress=False)  # the grid killed after its first run
    pilot = study_grid.pilot_runs("tiny", methods=("floor",))[0]
    runner.run_one(pilot, runner.Workbenches(progress=False), progress=False)  # one pilot run of several
    experiments.publish(["tiny"])
    committed = read_json(tmp_path / "results" / "protocol-tiny.json")
    assert [r["method"] for r in committed] == ["floor"] and len(read_json(tmp_path / "results" / "pilot-tiny.json")) == 1

    monkeypatch.setenv("CCR_WORKSPACE", str(tmp_path / "second"))  # the workspace is lost
    trained = []
    real = runner.train_and_score
    monkeypatch.setattr(runner, "train_and_score", lambda run, *a, **k: trained.append(run.label) or real(run, *a, **k))
    results = experiments.run_grid("tiny", progress=False)
    assert trained == [second.label]  # the committed run is restored, not trained
    assert {r["method"] for r in results} == {"floor", "uml"}
    restored = read_json(first.folder() / "result.json")
    assert restored == committed[0] and read_json(first.folder() / runner.RESTORED_FILE)["from"].endswith("protocol-tiny.json")
    assert not (first.folder() / "last").exists()
    # another budget is another run: its committed neighbour is not taken for it
    assert runner.committed_record(Run("tiny", "common", "floor", 0.0, 0, steps=5)) is None
    # the restored run's model, when needed, is trained here and repeats the committed numbers
    runner.ensure_model(first, runner.Workbenches(progress=False), progress=False)
    assert trained[-1] == first.label and (first.folder() / "last" / "manifest.json").exists()
    assert records.numbers(read_json(first.folder() / "result.json")) == records.numbers(committed[0])
    assert "other numbers" not in capsys.readouterr().out


def test_steps_runs_the_grid_at_another_budget_and_the_tables_keep_the_protocols(monkeypatch):
    """--steps N collects a new budget's runs (and publishes them) while the tables still show the protocol's budget."""
    from ccr_core import experiments

    seen = {}
    monkeypatch.setattr(experiments, "run_grid", lambda world, **k: seen.update(grid=(PROTOCOL[world].steps, PROTOCOL[world].grid_eval_every)))
    monkeypatch.setattr(experiments, "publish", lambda worlds, replace=False: seen.update(publish=PROTOCOL["demo-world"].steps) or [])
    monkeypatch.setattr(experiments, "write_results_md", lambda: seen.update(tables=PROTOCOL["demo-world"].steps) or "RESULTS.md")
    monkeypatch.setattr(experiments, "write_readme_table", lambda: "README.md")
    protocol = PROTOCOL["demo-world"]
    other, every = str(protocol.steps + 82), str(protocol.eval_every)  # a budget the protocol does not have
    assert experiments.main(["--world", "demo-world", "--steps", other, "--curve-every", every, "--quiet"]) == 0
    assert seen == {"grid": (int(other), int(every))} and PROTOCOL["demo-world"] == protocol
    assert experiments.main(["--world", "demo-world", "--steps", other, "--curve-every", every, "--publish"]) == 0
    assert seen["publish"] == int(other) and seen["tables"] == protocol.steps
    for ship in ("--ship", "--ship-finished"):
        with pytest.raises(SystemExit):
            experiments.main(["--world", "demo-world", "--steps", other, ship])


def test_ship_finished_ships_without_running_the_grid(monkeypatch):
    from ccr_core import experiments

    calls = []
    monkeypatch.setattr(experiments, "run_grid", lambda world, **k: calls.append(("grid", world)))
    monkeypatch.setattr(experiments, "ship", lambda world, progress=True, methods=None: calls.append(("ship", world, methods)) or [])
    monkeypatch.setattr(experiments, "write_results_md", lambda: calls.append(("tables",)) or "RESULTS.md")
    monkeypatch.setattr(experiments, "write_readme_table", lambda: "README.md")
    assert experiments.main(["--world", "demo-world", "--ship-finished", "--quiet", "--methods", "uml"]) == 0
    assert calls == [("ship", "demo-world", ["uml"]), ("tables",)]
    calls.clear()
    assert experiments.main(["--world", "demo-world", "--ship", "--quiet"]) == 0  # --ship runs the grid first
    assert calls == [("grid", "demo-world"), ("ship", "demo-world", None), ("tables",)]
