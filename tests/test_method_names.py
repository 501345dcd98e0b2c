"""No list of method names outside ``ccr_core/methods/``: the trainer, the study and the dashboard read a method's
facts (order, colour, description, role, loss keys, targets per batch, discriminator, uncertainty) from the registry.

Every string literal in ``ccr_core`` (outside ``ccr_core/methods/``) and ``app.py`` that is exactly a built-in method's
name is a failure, unless :data:`ALLOWED` lists it with the reason. Prose that mentions a method (a docstring, a
message) is not a name literal and is not matched.
"""
from __future__ import annotations

import ast
import io
import tokenize
from pathlib import Path

import ccr_core
from ccr_core.methods import METHODS

REPO = Path(ccr_core.__file__).resolve().parents[1]
BUILT_INS = frozenset(METHODS.list(plugins=False))

# (path or folder prefix, relative to the repository, the literal) -> why it stays
ALLOWED = {
    ("ccr_core/data/", "nrccr"): "the name of NRCCR's caption file format (the data layer is below the methods)",
    ("ccr_core/study/report.py", "nrccr"): "a research question tests NRCCR's own claim (robust to real MT noise)",
    ("ccr_core/study/report.py", "uml"): "research questions test UML's own claims (its detector, its targets)",
    ("ccr_core/study/grid.py", "nrccr"): "an ablation names the one method whose config it changes",
    ("ccr_core/study/grid.py", "one_to_k"): "an ablation names the one method whose config it changes",
    ("ccr_core/study/grid.py", "uml"): "an ablation names the one method whose config it changes",
}


def name_literals(source: str, names=BUILT_INS) -> list[tuple[int, str]]:
    """``(line, name)`` of every plain string literal in ``source`` whose value is exactly one of ``names``."""
    found = []
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type != tokenize.STRING:
            continue
        try:
            value = ast.literal_eval(token.string)
        except (ValueError, SyntaxError):  # an f-string: not a plain literal
            continue
        if isinstance(value, str) and value in names:
            found.append((token.start[0], value))
    return found


def allowed(path: str, name: str) -> bool:
    return any(path.startswith(prefix) and name == literal for prefix, literal in ALLOWED)


def scanned_files() -> list[Path]:
    files = [p for p in sorted((REPO / "ccr_core").rglob("*.py")) if "methods" not in p.relative_to(REPO / "ccr_core").parts[:1]]
    return files + [REPO / "app.py"]


def test_scanner_finds_a_name_literal_and_not_prose():
    source = 'DEFAULT = "uml"\n"""A docstring about uml and the floor."""\nx = f"{y}floor"\nz = ("floor", "baseline-en")\n'
    assert name_literals(source) == [(1, "uml"), (4, "floor"), (4, "baseline-en")]


def test_no_method_name_literals_outside_the_methods_package():
    files = scanned_files()
    assert len(files) > 50 and all(p.exists() for p in files)
    offenders = []
    for path in files:
        rel = path.relative_to(REPO).as_posix()
        offenders += [f"{rel}:{line}: {name!r}" for line, name in name_literals(path.read_text(encoding="utf-8"))
                      if not allowed(rel, name)]
    assert not offenders, ("built-in method names written outside ccr_core/methods/ (read the fact from the registry: "
                           "ccr_core.methods.REFERENCE / BASELINE / main_methods() / methods_with(...)):\n" + "\n".join(offenders))


def test_every_allowed_entry_names_a_built_in_with_a_reason():
    for (prefix, name), why in ALLOWED.items():
        assert name in BUILT_INS and why.strip() and (REPO / prefix).exists(), (prefix, name)
