"""The RESULTS.md writer: research answers and the floor comparison are computed from the numbers."""
from ccr_core.experiments import floor_comparison, issue_goals, results_markdown


def _result(model, method, noise, sumr: dict, mrv=None, auroc=None):
    groups = {g: {"SumR": v, "n_images": 1000, **{f"{d}_R@{k}": v / 6 for d in ("t2i", "i2t") for k in (1, 5, 10)}} for g, v in sumr.items()}
    r = {"model": model, "method": method, "noise_rate": noise, "groups": groups, "train_seconds": 10.0, "mrv": {}}
    if mrv is not None:
        r["mrv"] = {"mrv_i2t": mrv, "mrv_t2i": mrv, "mrv_mean": mrv}
    if auroc is not None:
        r["noise"] = {"auroc": auroc, "auroc_mismatch": 0.95}
    return r


def test_floor_comparison_names_the_best_method_per_language_and_judges_the_goal():
    results = [
        _result("floor", "floor", 0.0, {"en": 250.0, "zh": 150.0, "zh/human-translation": 220.0}),
        _result("baseline", "baseline", 0.0, {"en": 290.0, "zh": 140.0, "zh/human-translation": 230.0}),
        _result("one_to_k", "one_to_k", 0.0, {"en": 260.0, "zh": 185.0, "zh/human-translation": 250.0}),
        _result("one_to_k@noise0.4", "one_to_k", 0.4, {"en": 999.0, "zh": 999.0, "zh/human-translation": 999.0}),  # noisy runs don't count
    ]
    rows = {line.split(" | ")[0].strip("| "): line for line in floor_comparison(results) if line.startswith("| ") and "---" not in line}
    assert "| en | 251 | 250.0 | 289 | baseline | 290.0 | yes |" == rows["en"]
    assert "| zh | 160 | 150.0 | 184 | one_to_k | 185.0 | yes |" == rows["zh"]
    assert rows["zh/human-translation"].endswith("| 272 | one_to_k | 250.0 | **no** |")  # 1.15 x 236 = 271.4, stated as 272
    assert issue_goals() == {"en": 289, "zh": 184, "zh/human-translation": 272}  # the issue's own numbers
    assert floor_comparison(results[1:]) == []  # no floor row: nothing to compare


def test_shipped_models_table_comes_from_the_numbers():
    results = [
        _result("baseline", "baseline", 0.0, {"en": 300.0, "de": 200.0}, mrv=2.0),
        _result("one_to_k", "one_to_k", 0.0, {"en": 310.0, "de": 220.0}, mrv=1.5),
        _result("uml@noise0.4", "uml", 0.4, {"en": 240.0, "de": 160.0}, auroc=0.61),
    ]
    results[2].update({"protocol": "equal-budget", "budget": {"steps": 164, "target_exposures": 104960}})
    md = results_markdown({"w": results})
    assert "| one_to_k | frozen | 0 | 220.0 | 310.0 | 1.50 / 1.50 |  | 10 | earlier |" in md
    assert "| uml@noise0.4 | frozen | 0.4 | 160.0 | 240.0 |  /  | 0.610 / 0.950 | 10 | equal: 164 / 104,960 |" in md
    assert "Fine-tuned against the frozen floor" not in md  # no fine-tuned model, no targets table
    assert "One seed:" in md  # single-seed numbers are labelled as such; research answers live in the protocol section
