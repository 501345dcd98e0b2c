"""RESULTS.md's writers: the goal against a world's own reference floor and the shipped models' table are computed from
the numbers, with verdicts from intervals."""
from ccr_core.study import report, stats
from ccr_core.study.shipped import fine_tuned_targets, results_markdown


def _result(model, method, noise, sumr: dict, mrv=None, auroc=None):
    groups = {g: {"SumR": v, "n_images": 1000, **{f"{d}_R@{k}": v / 6 for d in ("t2i", "i2t") for k in (1, 5, 10)}} for g, v in sumr.items()}
    r = {"model": model, "method": method, "noise_rate": noise, "groups": groups, "train_seconds": 10.0, "mrv": {}}
    if mrv is not None:
        r["mrv"] = {"mrv_i2t": mrv, "mrv_t2i": mrv, "mrv_mean": mrv}
    if auroc is not None:
        r["noise"] = {"auroc": auroc, "auroc_mismatch": 0.95}
    return r


def _run(method, seed, sumr: dict, noise=0.0, setting="common"):
    return {"setting": setting, "method": method, "noise_rate": noise, "seed": seed, "groups": {g: {"SumR": v} for g, v in sumr.items()},
            "budget": {"steps": 699, "best_epoch": 3, "epochs": 3}}


def test_floor_goal_is_per_world_and_judged_on_the_interval():
    runs = []
    for s in (0, 1, 2):
        runs += [_run("floor", s, {"en": 250.0, "zh": 150.0, "zh/human-translation": 220.0}),
                 _run("baseline", s, {"en": 292.0 + s, "zh": 140.0, "zh/human-translation": 230.0}),
                 _run("one_to_k", s, {"en": 260.0, "zh": 180.0 + 10 * s, "zh/human-translation": 250.0}),
                 _run("one_to_k", s, {"en": 999.0, "zh": 999.0, "zh/human-translation": 999.0}, noise=0.4)]  # noisy runs don't count
    rows = {line.split(" | ")[0].strip("| "): line for line in report.floor_goal("flickr8k-ml", stats.cells(runs)) if line.startswith("| ") and "---" not in line}
    # the reference is the grid's own floor (its mean over seeds), not a number written in the code
    assert rows["en"] == "| en | 250.0 | 287.5 | baseline (common) | 293.0 ± 2.5 | met |"
    assert rows["zh"].startswith("| zh | 150.0 | 172.5 | one_to_k (common) | 190.0 ± 24.8 |") and rows["zh"].endswith("| not resolved at 3 seeds |")
    assert rows["zh/human-translation"].endswith("| 250.0 ± 0.0 | not met |")  # 1.15 x 220 = 253.0
    assert report.floor_goal("flickr8k-ml", stats.cells([r for r in runs if r["method"] != "floor"])) == []  # no floor, no goal
    assert report.floor_goal("demo-world", stats.cells(runs)) == []  # no cross-world floors: the demo world has none


def test_shipped_models_table_comes_from_the_numbers():
    results = [
        _result("baseline", "baseline", 0.0, {"en": 300.0, "de": 200.0}, mrv=2.0),
        _result("one_to_k", "one_to_k", 0.0, {"en": 310.0, "de": 220.0}, mrv=1.5),
        _result("uml@noise0.4", "uml", 0.4, {"en": 240.0, "de": 160.0}, auroc=0.61),
        _result("nrccr", "nrccr", 0.0, {"en": 240.0, "de": 160.0}),
    ]
    results[2].update({"protocol": "equal-budget", "budget": {"steps": 164, "target_exposures": 104960, "best_epoch": 2, "epochs": 2}})
    results[3].update({"protocol": "equal-budget", "budget": {"steps": 699, "target_exposures": 300000, "best_epoch": 1, "epochs": 3}})
    md = results_markdown({"w": results})
    assert "| one_to_k | frozen | 0 | 220.0 | 310.0 | 1.50 / 1.50 |  | 10 | earlier |" in md
    assert "| uml@noise0.4 | frozen | 0.4 | 160.0 | 240.0 |  /  | 0.610 / 0.950 | 10 | 164 of 164 steps |" in md
    assert "| nrccr | frozen | 0 | 160.0 | 240.0 |  /  |  | 10 | 233 of 699 steps (best val. epoch) |" in md
    assert "Fine-tuned against the frozen floor" not in md  # no fine-tuned model, no targets table
    assert "One seed:" in md


def test_fine_tuning_targets_need_an_interval_for_a_verdict():
    def row(model, en, zh, ht, seconds, tuned=None):
        return {"model": model, "method": model.split("-")[0], "noise_rate": 0.0, "train_seconds": seconds, "mrv": {},
                "groups": {g: {"SumR": v, "n_images": 1000, **{f"{d}_R@{k}": v / 6 for d in ("t2i", "i2t") for k in (1, 5, 10)}}
                           for g, v in (("en", en), ("zh", zh), ("zh/human-translation", ht))},
                **({"fine_tuned": tuned} if tuned else {})}

    tuned = {"trainable_image_blocks": 2, "backbone_lr": 1e-4}
    shipped = [row("floor", 250.0, 150.0, 220.0, 50), row("baseline-ft", 276.0, 158.0, 243.0, 700, tuned), row("uml-ft", 270.0, 160.0, 242.5, 1900, tuned)]
    one_seed = [{**_run("baseline", 0, {"en": 280.0, "zh": 158.0, "zh/human-translation": 243.0})},
                {**_run("uml", 0, {"en": 270.0, "zh": 160.0, "zh/human-translation": 242.5})}]
    md = "\n".join(fine_tuned_targets(shipped, one_seed))
    assert "| en | 250.0 | +10% | baseline | +12.0% | 1 | not resolved (1 seed, no interval) |" in md  # one seed: no verdict
    three = [_run("baseline", s, {"en": 280.0 + s, "zh": 158.0, "zh/human-translation": 200.0 + s}) for s in (0, 1, 2)]
    md = "\n".join(fine_tuned_targets(shipped, three))
    assert "| en | 250.0 | +10% | baseline | +12.4 ± 1.0% | 3 | met |" in md
    assert "| zh/human-translation | 220.0 | +10% | baseline | -8.6 ± 1.1% | 3 | not met |" in md
    assert "uml-ft's, 31.7 min" in md and "over it for uml-ft" in md
    assert fine_tuned_targets([r for r in shipped if "fine_tuned" not in r], three) == []
    table = results_markdown({"flickr8k-ml": shipped})
    assert "| floor | frozen | 0 |" in table and "| uml-ft | fine-tuned: image top 2 blocks | 0 |" in table
