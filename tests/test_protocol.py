"""The equal-budget comparison protocol (ccr_core/protocol.py): the grid's budgets, resumable run folders,
intervals and research answers computed from per-seed results, and one tiny grid run end to end."""
from __future__ import annotations

import math

import pytest
from scipy import stats

from ccr_core import protocol
from ccr_core.protocol import PROTOCOL, Run, WorldProtocol

from conftest import make_tiny_bundle


@pytest.fixture
def known_epochs(monkeypatch):
    """steps_per_epoch without a built bundle: 82 demo-world steps, 234 Flickr8k-ML steps per epoch."""
    monkeypatch.setattr(protocol, "_EPOCH_STEPS", {("demo-world", 128): 82, ("flickr8k-ml", 128): 234})


def test_every_run_of_a_world_has_the_same_budget(known_epochs):
    for world, proto in PROTOCOL.items():
        runs = protocol.grid(world)
        configs = [r.train_config() for r in runs]
        assert {c.max_steps for c in configs} == {proto.steps}
        assert {c.batch_size for c in configs} == {proto.train["batch_size"]}
        assert {c.targets_per_batch for c in configs} == {0}  # every target language in every step, as 1-to-K
        assert all(c.epochs * protocol.steps_per_epoch(world, c.batch_size) >= c.max_steps for c in configs)
        assert all(c.patience > c.epochs for c in configs)  # no early stop: nobody trains less
        common = [(r, c) for r, c in zip(runs, configs) if r.setting == "common" and r.method != "floor"]
        assert common and all(c.method_config.get("head") == "linear" for _, c in common)
        assert all("head" not in c.method_config for r, c in zip(runs, configs) if r.setting == "published")
        assert {r.method for r in runs if r.method == "floor"} <= {"floor"} and all(r.setting == "common" for r in runs if r.method == "floor")
        assert {r.seed for r in runs} == {0, 1, 2}
    demo = protocol.grid("demo-world")
    assert {r.noise for r in demo if r.setting == "common"} == {0.0, 0.2, 0.4, 0.6}
    assert {r.noise for r in demo if r.setting == "published"} == {0.0, 0.4}


def test_run_folder_names_carry_the_config(known_epochs, monkeypatch, tmp_path):
    a, b = Run("demo-world", "common", "uml", 0.4, 0), Run("demo-world", "common", "uml", 0.4, 1)
    assert a.folder(tmp_path) != b.folder(tmp_path) and a.folder(tmp_path) == Run("demo-world", "common", "uml", 0.4, 0).folder(tmp_path)
    before = a.folder(tmp_path)
    monkeypatch.setitem(PROTOCOL, "demo-world", WorldProtocol(**{**PROTOCOL["demo-world"].__dict__, "steps": 100}))
    assert a.folder(tmp_path) != before  # a changed config gets a new folder, the old run is not reused


def test_t_interval_and_verdicts():
    mean, hw = protocol.t_interval([1.0, 2.0, 4.0])
    sd = math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    assert mean == pytest.approx(7 / 3) and hw == pytest.approx(stats.t.ppf(0.975, 2) * sd / math.sqrt(3))
    assert math.isnan(protocol.t_interval([5.0])[1])
    assert protocol.verdict(3.0, 1.0, 3) == "holds"
    assert protocol.verdict(-3.0, 1.0, 3) == "does not hold"
    assert protocol.verdict(0.5, 1.0, 3) == "not resolved at 3 seeds"
    assert protocol.verdict(-3.0, 1.0, 3, better="lower") == "holds"
    assert protocol.verdict(3.0, float("nan"), 1).startswith("not resolved")


def _result(method, noise, seed, target, en=500.0, auroc=None, setting="common"):
    r = {"setting": setting, "method": method, "noise_rate": noise, "seed": seed,
         "groups": {"en": {"SumR": en}, "de": {"SumR": target}, "zh/human-translation": {"SumR": 1.0}},
         "mrv": {"mrv_mean": 2.0 + seed}, "budget": {"steps": 10, "target_exposures": 100, "train_seconds": 5.0}}
    if auroc:
        r["detectors"] = {name: {"auroc": value, "auprc": 0.5, "precision_at_n_noisy": 0.5} for name, value in auroc.items()}
    return r


def test_research_answers_come_from_paired_seed_differences():
    results = []
    for seed in (0, 1, 2):
        results += [_result("baseline", 0.0, seed, 400.0 + seed), _result("baseline", 0.4, seed, 300.0 + seed,
                                                                         auroc={"cosine": 0.97 + 0.01 * seed, "pair_loss": 0.9}),
                    _result("uml", 0.0, seed, 400.0 + seed), _result("uml", 0.4, seed, 340.0 + 2 * seed,
                                                                  auroc={"cosine": 0.9, "pair_loss": 0.9, "uncertainty": 0.5, "mismatch": 0.99})]
    table = protocol.cells(results)
    share = protocol.kept_share(table, "common", "uml", 0.4)
    assert share[1] == pytest.approx(100 * 342 / 401)  # target SumR ignores English and the "/" groups
    mean, hw, n = protocol.paired(share, protocol.kept_share(table, "common", "baseline", 0.4))
    assert n == 3 and mean > 0
    text = "\n".join(protocol.research_answers("demo-world", table))
    assert "uml − baseline: difference +" in text and "**holds**" in text
    assert "UML u − baseline cosine: difference -0.48" in text and "**does not hold**" in text
    targets = "\n".join(protocol.uml_targets(table))
    assert "UML keeps ≥ baseline's share + 5 points" in targets and "**met**" in targets
    md = "\n".join(protocol.protocol_markdown("demo-world", results))
    assert "| uml | 0.4 | 3 |" in md and "raw cosine (trivial)" in md


def test_against_floor_says_above_matches_or_below_per_language():
    results = []
    for seed in (0, 1, 2):
        results += [_result("floor", 0.0, seed, 400.0 + seed, en=500.0 + seed),
                    _result("baseline", 0.0, seed, 400.0 + seed + (0.5 if seed == 1 else -0.5), en=500.0 + seed),  # noise around the floor
                    _result("nrccr", 0.0, seed, 380.0 + seed, en=520.0 + seed)]  # below in de, above in en
    lines = protocol.against_floor(protocol.cells(results))
    header = lines[4]
    assert header.startswith("| method | de | en |")
    baseline = next(line for line in lines if line.startswith("| baseline |"))
    nrccr = next(line for line in lines if line.startswith("| nrccr |"))
    assert baseline.count("(matches)") == 1 and "(identical)" in baseline  # de noisy around 0; en the same in every seed
    assert "-20.0 ± 0.0 (**below**)" in nrccr and "+20.0 ± 0.0 (above)" in nrccr
    assert protocol.against_floor(protocol.cells([r for r in results if r["method"] != "floor"])) == []


def test_ablations_change_one_field_and_are_compared_with_their_cell_and_the_floor(known_epochs, tmp_path):
    runs = protocol.ablation_runs("demo-world") + protocol.ablation_runs("flickr8k-ml")
    grid = {r.folder(tmp_path) for w in ("demo-world", "flickr8k-ml") for r in protocol.grid(w)}
    assert {r.world for r in runs} == {"demo-world", "flickr8k-ml"} and {r.seed for r in runs} == {0, 1, 2}
    assert not grid & {r.folder(tmp_path) for r in runs} and len({r.folder(tmp_path) for r in runs}) == len(runs)
    for run in runs:
        plain = Run(run.world, run.setting, run.method, run.noise, run.seed).train_config()
        changed = run.train_config()
        assert changed.method_config == {**plain.method_config, **dict(run.overrides)}  # only the ablation's fields differ
        assert (changed.max_steps, changed.batch_size, changed.seed) == (plain.max_steps, plain.batch_size, plain.seed)
        assert f"+{run.variant}" in run.label and f"{run.method}+{run.variant}" == run.folder(tmp_path).parent.name
    tau = next(a for a in protocol.ABLATIONS["flickr8k-ml"] if a.method == "one_to_k")
    results, ablated = [], []
    for seed in (0, 1, 2):
        results += [_result("floor", 0.0, seed, 400.0 + seed, en=500.0 + seed), _result("one_to_k", 0.0, seed, 400.0, en=468.0 + seed)]
        ablated.append({**_result("one_to_k", 0.0, seed, 400.0 + seed, en=499.0 + seed + (0.6 if seed == 1 else -0.3)), "variant": tau.name})
    md = "\n".join(protocol.ablation_markdown("flickr8k-ml", results, ablated))
    assert f"one_to_k + {tau.name}" in md and "temperature_max 0.05" in md
    row = next(line for line in md.splitlines() if line.startswith("| ablation − floor |"))
    assert row.split("|")[3].strip().startswith("-1.0 ±") and "(matches)" in row.split("|")[3]  # en: back to the floor
    row = next(line for line in md.splitlines() if line.startswith("| ablation − one_to_k |"))
    assert "+31.0 ±" in row.split("|")[3] and "(above)" in row.split("|")[3]  # en: +31 over the method's own runs
    assert protocol.ablation_markdown("flickr8k-ml", results, []) == []
    # an ablation that adds one change to another is also compared with that one
    weight = next(a for a in protocol.ABLATIONS["flickr8k-ml"] if a.against == tau.name)
    more = [{**_result("one_to_k", 0.0, seed, 400.0 + seed, en=504.0 + seed), "variant": weight.name} for seed in (0, 1, 2)]
    md = "\n".join(protocol.ablation_markdown("flickr8k-ml", results, ablated + more)).split(f"one_to_k + {weight.name}")[1]
    row = next(line for line in md.splitlines() if line.startswith(f"| ablation − one_to_k+{tau.name} |"))
    assert "+5.0 ±" in row.split("|")[3]  # en: 504 + s against 499 + s (+0.6 / -0.3)
    assert "english_weight 0.5" in md


def test_fine_tuned_runs_are_the_grids_common_runs_with_backbone_tops_added(known_epochs, tmp_path):
    runs = protocol.fine_tuned_runs("flickr8k-ml")
    tune = protocol.FINE_TUNED["flickr8k-ml"]
    assert [r.method for r in runs] == list(PROTOCOL["flickr8k-ml"].methods) and {(r.setting, r.noise, r.seed) for r in runs} == {("common", 0.0, 0)}
    grid = {r.folder(tmp_path) for r in protocol.grid("flickr8k-ml")}
    assert not grid & {r.folder(tmp_path) for r in runs}  # folders of their own: no frozen run is reused or replaced
    for run in runs:
        plain, tuned = Run(run.world, "common", run.method, 0.0, 0).train_config(), run.train_config()
        assert tuned.trainable_image_blocks == dict(tune.train)["trainable_image_blocks"] > 0 and plain.trainable_image_blocks == 0
        assert (tuned.max_steps, tuned.batch_size, tuned.lr, tuned.method_config) == (plain.max_steps, plain.batch_size, plain.lr, plain.method_config)
        assert run.folder(tmp_path).parent.name == f"{run.method}+{tune.name}"
    assert [r.seed for r in protocol.fine_tuned_runs("flickr8k-ml", seeds=(0, 1), methods=["uml"])] == [0, 1]
    assert protocol.fine_tuned_runs("demo-world") == []


def test_fine_tuned_table_pairs_each_method_with_its_frozen_run():
    grid = [_result(m, 0.0, s, 400.0 + s, en=500.0) for m in ("floor", "uml") for s in (0, 1, 2)]
    tuned = [_result("uml", 0.0, 0, 430.0, en=520.0)]
    md = protocol.fine_tuned_markdown("flickr8k-ml", grid, tuned)
    rows = {tuple(c.strip() for c in line.split("|")[1:3]): line.split("|") for line in md if line.startswith("| uml")}
    assert rows[("uml", "fine-tuned")][3].strip() == "1" and rows[("uml", "frozen")][3].strip() == "1"  # the frozen run of the same seed
    header = next(line for line in md if line.startswith("| method |")).split("|")
    col = header.index(" de SumR ")
    assert rows[("uml", "fine-tuned")][col].strip() == "430.0" and rows[("uml", "frozen")][col].strip() == "400.0"
    assert rows[("uml", "change")][col].strip() == "+30.0 (1 seed)"  # one seed: a number, no verdict
    more = tuned + [_result("uml", 0.0, s, 430.0 + s + (0.5 if s == 1 else 0.0), en=520.0) for s in (1, 2)]
    md = protocol.fine_tuned_markdown("flickr8k-ml", grid, more)
    change = next(line for line in md if line.startswith("| uml | change")).split("|")
    assert change[col].strip().startswith("+30.2 ±") and "(above)" in change[col]
    assert not [line for line in md if line.startswith("| floor")]  # no fine-tuned floor run: no row
    assert protocol.fine_tuned_markdown("flickr8k-ml", grid, []) == [] and protocol.fine_tuned_markdown("demo-world", grid, tuned) == []


def test_fine_tuning_targets_are_measured_against_the_frozen_floor():
    from ccr_core.experiments import fine_tuned_targets, results_markdown

    def row(model, en, zh, ht, seconds, tuned=None):
        return {"model": model, "method": model.split("-")[0], "noise_rate": 0.0, "train_seconds": seconds, "mrv": {},
                "groups": {g: {"SumR": v, "n_images": 1000, **{f"{d}_R@{k}": v / 6 for d in ("t2i", "i2t") for k in (1, 5, 10)}}
                           for g, v in (("en", en), ("zh", zh), ("zh/human-translation", ht))},
                **({"fine_tuned": tuned} if tuned else {})}

    tuned = {"trainable_image_blocks": 2, "backbone_lr": 1e-4}
    rows = [row("floor", 250.0, 150.0, 220.0, 50), row("baseline-ft", 276.0, 158.0, 243.0, 700, tuned), row("uml-ft", 270.0, 160.0, 242.5, 1900, tuned)]
    md = "\n".join(fine_tuned_targets(rows))
    assert "| en | 250.0 | +10% (275.0) | baseline-ft | 276.0 | +10.4% | yes |" in md
    assert "| zh/human-translation | 220.0 | +10% (242.0) | baseline-ft | 243.0 | +10.5% | yes |" in md
    assert "| zh | 150.0 | +5% (157.5) | uml-ft | 160.0 | +6.7% | yes |" in md
    assert "uml-ft's, 31.7 min" in md and "**not met** by uml-ft" in md
    rows[1] = row("baseline-ft", 271.0, 158.0, 240.0, 700, tuned)
    assert "| en | 250.0 | +10% (275.0) | baseline-ft | 271.0 | +8.4% | **no** |" in "\n".join(fine_tuned_targets(rows))
    assert fine_tuned_targets([r for r in rows if "fine_tuned" not in r]) == []  # a world without fine-tuned models
    table = results_markdown({"flickr8k-ml": rows})
    assert "| floor | frozen | 0 |" in table and "| uml-ft | fine-tuned: image top 2 blocks | 0 |" in table


def test_tiny_grid_runs_end_to_end_and_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("CCR_WORKSPACE", str(tmp_path / "ws"))
    bundle = make_tiny_bundle(tmp_path / "bundle", n_images=45, langs=("en", "de", "fr"), with_mt=True)
    monkeypatch.setitem(PROTOCOL, "tiny", WorldProtocol(
        train={"batch_size": 4, "lr": 1e-3, "targets_per_batch": 0, "text_backbone": "tiny-text", "visual_backbone": "tiny-visual"},
        steps=5, noise={"common": (0.0, 0.5), "published": (0.0,)}, methods=("floor", "uml"), seeds=(0,), data=str(bundle)))
    from ccr_core import experiments
    from ccr_core.experiments import run_grid

    monkeypatch.setattr(experiments, "RESULTS_DIR", tmp_path / "results")
    results = run_grid("tiny", progress=False)
    assert len(results) == len(protocol.grid("tiny")) == 2 * 2 + 1  # the floor runs in the common setting only
    assert all(r["budget"]["steps"] == 5 and r["budget"]["target_exposures"] == 5 * 4 * 2 for r in results)
    noisy = [r for r in results if r["noise_rate"] == 0.5]
    assert noisy and all({"cosine", "pair_loss"} <= set(r["detectors"]) for r in noisy)
    assert all({"uncertainty", "mismatch"} <= set(r["detectors"]) for r in noisy if r["method"] == "uml")
    stamps = {r.label: r.folder().joinpath("result.json").stat().st_mtime_ns for r in protocol.grid("tiny")}
    again = run_grid("tiny", progress=False)  # everything finished: nothing is retrained or re-evaluated
    assert len(again) == len(results) and (tmp_path / "results" / "protocol-tiny.json").exists()
    assert stamps == {r.label: r.folder().joinpath("result.json").stat().st_mtime_ns for r in protocol.grid("tiny")}


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
    world = SimpleNamespace(name="w", memo={})
    cell = leaderboard._interval(world, SimpleNamespace(method="uml", noise=0.4), "de")
    mean, hw = protocol.t_interval([300.0, 301.0, 302.0])
    assert cell == f"{mean:.1f} ± {hw:.1f} (3 seeds)"
    assert leaderboard._interval(world, SimpleNamespace(method="nrccr", noise=0.0), "de") is None  # not in the grid
    # a model with fine-tuned backbone tops: its fine-tuned runs (one seed here), never the frozen grid's cell
    write_json_atomic(tmp_path / "results" / "fine-tuned-w.json", [_result("uml", 0.0, 0, 420.0)])
    tuned = SimpleNamespace(method="uml", noise=0.0, trained=SimpleNamespace(meta={"visual_trainable_blocks": 2}))
    assert leaderboard._interval(world, tuned, "de") == "420.0 (1 seed)"
    assert leaderboard._interval(world, SimpleNamespace(method="baseline", noise=0.0, trained=tuned.trained), "de") is None
    table = leaderboard.interval_table(world)
    assert len(table) == 4 and set(table["seeds"]) == {3} and table.iloc[0]["target SumR"].startswith("401.0 ±")
    fig = leaderboard.noise_plot(world, "published")
    assert {t.name for t in fig.data} == {"baseline", "uml"} and list(fig.data[0].x) == [0.0, 0.4]
    findings = about.measured_findings(world)
    assert "does UML's detector beat the raw cosine" in findings and "UML DECL score − baseline cosine" in findings
