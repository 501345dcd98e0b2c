"""What RESULTS.md and README.md say must follow from their numbers: every verdict word is checked against the interval
printed beside it, and every number README quotes must stand in results/*.json, RESULTS.md or benchmarks/RESULTS.md."""
from __future__ import annotations

import re

import pytest

from ccr_core.experiments import README_TABLE_END, README_TABLE_START, headline_table
from ccr_core.paths import REPO_ROOT

RESULTS = (REPO_ROOT / "RESULTS.md").read_text(encoding="utf-8")
README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
NUM = r"[+-]?\d+(?:\.\d+)?"


def _ulp(text: str) -> float:
    """One unit of the last printed digit (the rounding a check must allow)."""
    return 10.0 ** -(len(text.split(".")[1]) if "." in text else 0)


def _claims(text: str):
    """(mean, half-width, word, tolerance) of every "difference m ± h ... — **word**" line."""
    for m in re.finditer(rf"difference ({NUM}) ± ({NUM})[^—\n]*— \*\*([a-z ]+?)(?: at \d+ (?:runs?|seeds?))?\*\*", text):
        yield float(m[1]), float(m[2]), m[3], _ulp(m[1]) + _ulp(m[2])


def _cells(text: str):
    """(mean, half-width, word, tolerance) of every table cell "m ± h (word)"."""
    for m in re.finditer(rf"({NUM}) ± ({NUM}) \((above|below|not resolved|identical)\)", text):
        yield float(m[1]), float(m[2]), m[3], _ulp(m[1]) + _ulp(m[2])


def _targets(text: str):
    """(mean, half-width, threshold, word, tolerance) of every "m ± h unit (n runs) against the target ≥ t — **word**"."""
    for m in re.finditer(rf"({NUM}) ± ({NUM})[^(\n]*\(\d+ (?:runs?|seeds?)\) against the target ≥ ({NUM})[^—\n]*— \*\*([a-z ]+?)(?: at \d+ (?:runs?|seeds?))?\*\*", text):
        yield float(m[1]), float(m[2]), float(m[3]), m[4], _ulp(m[1]) + _ulp(m[2])


def test_results_md_has_verdicts_to_check():
    # the patterns must keep finding the verdicts RESULTS.md prints (else every check below passes vacuously); the
    # counts are those of the converged-budget grids while they fill (demo-world 54 of 105 runs, flickr8k-ml 0 of 90:
    # 12, 6 and 3); they only grow as cells complete
    assert len(list(_claims(RESULTS))) >= 10 and len(list(_cells(RESULTS))) >= 6 and len(list(_targets(RESULTS))) >= 3


@pytest.mark.parametrize("mean,hw,word,tol", list(_claims(RESULTS)))
def test_every_research_answer_follows_its_interval(mean, hw, word, tol):
    if word in ("holds", "does not hold"):
        assert abs(mean) - hw > -tol, f"'{word}' but {mean} ± {hw} contains 0"
    elif word == "identical in every seed":
        assert mean == 0 and hw == 0
    else:
        assert word == "not resolved" and abs(mean) - hw <= tol, f"'{word}' but {mean} ± {hw} excludes 0"


@pytest.mark.parametrize("mean,hw,word,tol", list(_cells(RESULTS)))
def test_every_table_cell_word_follows_its_interval(mean, hw, word, tol):
    if word == "above":
        assert mean - hw > -tol, f"above but {mean} ± {hw}"
    elif word == "below":
        assert mean + hw < tol, f"below but {mean} ± {hw}"
    elif word == "identical":
        assert mean == 0 and hw == 0
    else:
        assert mean - hw <= tol and mean + hw >= -tol, f"not resolved but {mean} ± {hw} excludes 0"


@pytest.mark.parametrize("mean,hw,threshold,word,tol", list(_targets(RESULTS)))
def test_every_met_target_has_its_whole_interval_over_the_bar(mean, hw, threshold, word, tol):
    if word == "met":
        assert mean - hw >= threshold - tol, f"met but {mean} ± {hw} reaches below {threshold}"
    elif word == "not met":
        assert mean + hw < threshold + tol, f"not met but {mean} ± {hw} reaches {threshold}"
    else:
        assert word == "not resolved" and mean - hw < threshold + tol and mean + hw >= threshold - tol


def test_no_verdict_in_results_md_is_a_bare_mean():
    """The words the old tables used for "the interval contains 0" or for a mean over the bar are gone."""
    assert "(matches)" not in RESULTS and "met** (mean" not in RESULTS and "matches the floor" not in RESULTS


def test_readme_headline_table_is_the_generated_one():
    start, end = README.index(README_TABLE_START), README.index(README_TABLE_END)
    assert README[start + len(README_TABLE_START):end].strip() == headline_table().strip()


def _published_numbers() -> set[str]:
    text = RESULTS + (REPO_ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    for path in sorted((REPO_ROOT / "results").glob("*.json")):
        text += path.read_text(encoding="utf-8")
    found = set(re.findall(r"\d[\d,]*\.?\d*", text))
    return found | {n.replace(",", "") for n in found}


def test_readme_quotes_no_number_absent_from_the_results():
    """A number in README's prose (not its commands, paths or versions) must stand in results/*.json, RESULTS.md or
    benchmarks/RESULTS.md, so no hand-copied figure can drift from the records."""
    start, end = README.index(README_TABLE_START), README.index(README_TABLE_END)
    prose = README[:start] + README[end:]  # the headline table is generated (checked above)
    prose = re.sub(r"```.*?```", "", prose, flags=re.S)  # commands
    prose = re.sub(r"`[^`]*`", "", prose)  # inline code: paths, flags, versions
    prose = re.sub(r"\]\([^)]*\)", "]", prose)  # link targets
    prose = re.sub(r"<!--.*?-->", "", prose, flags=re.S)
    published = _published_numbers()
    small = {str(n) for n in range(0, 11)}  # counts in words' place ("two commands", "3 seeds", "5 methods")
    quoted = [n.rstrip(".,") for n in re.findall(r"(?<![\w.])\d[\d,]*(?:\.\d+)?", prose)]
    missing = sorted({n for n in quoted if n not in small and n not in published and n.replace(",", "") not in published})
    assert not missing, f"README quotes numbers found in no results file: {missing}"


def test_results_md_is_the_generated_one():
    """RESULTS.md is exactly what the records give (`python -m ccr_core.experiments --markdown-only`): no hand edit, no
    flipped word, no deleted line can stand."""
    from ccr_core.experiments import render_results_md

    assert RESULTS == render_results_md(), "RESULTS.md differs from the records: run python -m ccr_core.experiments --markdown-only"


def _problems(text: str) -> list[str]:
    """Everything the checks of this file find wrong in a RESULTS.md text."""
    from ccr_core.experiments import render_results_md

    found = [] if text == render_results_md() else ["differs from the generated RESULTS.md"]
    for mean, hw, word, tol in _claims(text):
        if word in ("holds", "does not hold") and not abs(mean) - hw > -tol:
            found.append(f"{word}: {mean} ± {hw}")
    for mean, hw, word, tol in _cells(text):
        if word == "identical" and not (mean == 0 and hw == 0):
            found.append(f"identical: {mean} ± {hw}")
    return found


MUTATIONS = {
    "holds -> does not hold": (r"— \*\*holds\*\*", "— **does not hold**"),
    "does not hold -> holds": (r"— \*\*does not hold\*\*", "— **holds**"),
    "identical -> holds": (r"— \*\*identical in every seed\*\*", "— **holds**"),
    "met -> not met": (r"— \*\*met\*\*", "— **not met**"),
    "a table verdict without an interval": (r"\| not resolved \(1 seed, no interval\) \|", "| met |"),
    "a research answer deleted": (r"\n- [^\n]*— \*\*(?:holds|does not hold|not resolved[^*]*)\*\*", ""),
    "a number changed": (r"(\d+)\.(\d) ± ", r"\g<1>.9 ± "),
}


def test_the_checks_catch_every_named_mutation():
    """Each mutation a reviewer tried (a flipped sign, identical turned into holds, a one-run verdict, a deleted research
    answer) makes the checks fail; at least five of them apply to the current RESULTS.md."""
    assert _problems(RESULTS) == []
    applied = 0
    for name, (pattern, replacement) in MUTATIONS.items():
        mutated, n = re.subn(pattern, replacement, RESULTS, count=1)
        if n:
            applied += 1
            assert _problems(mutated), f"the mutation '{name}' went unnoticed"
    assert applied >= 5
