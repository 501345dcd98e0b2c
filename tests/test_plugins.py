"""Methods from outside ccr_core (plugins): found through the entry-point group ``ccr_lab.methods`` or by
module name, a broken one named without breaking other commands, checked by ``ccr_core.testing``, and the
example package (examples/ccr_sigmoid) trained by ``ccr train``, run in the comparison grid, written into
RESULTS.md and served by the dashboard -- with nothing in ccr_core naming it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from ccr_core.methods import METHODS, CCRMethod, MethodConfig
from ccr_core.registry import PluginError, Registry, UnknownNameError
from ccr_core.testing import check_method

from conftest import make_tiny_bundle

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "ccr_sigmoid"


def install_as_distribution(site: Path, name: str, entry_points: dict[str, str], group: str = "ccr_lab.methods") -> Path:
    """What ``pip install`` leaves for importlib.metadata: a ``<name>.dist-info`` with ``entry_points.txt``, on ``site``."""
    info = site / f"{name.replace('-', '_')}-0.1.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entry_points.items()))
    return site


def example_site(site: Path) -> Path:
    """The example package installed on ``site`` with the entry points its pyproject.toml declares."""
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]
    return install_as_distribution(site, project["name"], project["entry-points"]["ccr_lab.methods"])


def plugin_env(*paths: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "CCR_PLUGINS"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *map(str, paths)])
    return {**env, **extra}


# --------------------------------------------------------------------------------------------------
# the registry's plugin loading
# --------------------------------------------------------------------------------------------------
GOOD = '''
from dataclasses import dataclass
from ccr_core.methods.base import CCRMethod, MethodConfig
from tests_registry_target import REGISTRY

@REGISTRY.register("good")
class Good(CCRMethod):
    name = "good"
'''


@pytest.fixture
def plugin_world(tmp_path, monkeypatch):
    """A fresh registry with its own entry-point group, and plugin modules on sys.path."""
    group = f"ccr_lab.test_{tmp_path.name.replace('-', '_')}"
    registry = Registry("method", plugin_group=group)
    target = type(sys)("tests_registry_target")
    target.REGISTRY = registry
    monkeypatch.setitem(sys.modules, "tests_registry_target", target)
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "plug_good.py").write_text(GOOD)
    (mods / "plug_class.py").write_text("from ccr_core.methods.base import CCRMethod\nclass Other(CCRMethod):\n    name = 'other'\n")
    (mods / "plug_broken.py").write_text("from tests_registry_target import REGISTRY\n"
                                         "REGISTRY.register('half')(object)\nraise ImportError('needs libfoo 2')\n")
    (mods / "plug_clash.py").write_text("from tests_registry_target import REGISTRY\nfrom ccr_core.methods.base import CCRMethod\n"
                                        "REGISTRY.register('good')(CCRMethod)\n")
    (mods / "plug_silent.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(mods))
    for name in ("plug_good", "plug_class", "plug_broken", "plug_clash", "plug_silent"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    return registry, group, tmp_path / "site"


def test_entry_points_register_modules_and_factories_and_a_broken_one_is_named(plugin_world, monkeypatch):
    registry, group, site = plugin_world
    install_as_distribution(site, "good-dist", {"good": "plug_good", "other": "plug_class:Other"}, group)
    install_as_distribution(site, "broken-dist", {"half": "plug_broken", "silent": "plug_silent"}, group)
    monkeypatch.syspath_prepend(str(site))
    added = registry.load_plugins()
    assert added == ["good", "other"] and registry.list() == ["good", "other"]
    assert registry.plugin_of("good") == "good = plug_good (good-dist)" and registry.plugin_of("other").startswith("other = plug_class:Other")
    assert registry.list(plugins=False) == []
    # the broken plugins registered nothing (not even what they registered before failing), and say why
    assert set(registry.plugin_errors) == {"half = plug_broken (broken-dist)", "silent = plug_silent (broken-dist)"}
    assert "ImportError: needs libfoo 2" in registry.plugin_errors["half = plug_broken (broken-dist)"]
    assert "registered no method named 'silent'" in registry.plugin_errors["silent = plug_silent (broken-dist)"]
    with pytest.raises(UnknownNameError, match=r"unknown method 'half'.*plugin half = plug_broken \(broken-dist\) failed to load \(ImportError: needs libfoo 2 \(at .*plug_broken.py, line 3\)\)"):
        registry.get("half")
    assert registry.load_plugins() == []  # each plugin is imported once per process


def test_modules_by_name_strict_errors_name_the_plugin(plugin_world):
    registry, _, _ = plugin_world
    assert registry.load_plugins(["plug_good"], entry_points=False, strict=True) == ["good"]
    assert registry.plugin_of("good") == "plug_good"
    with pytest.raises(PluginError, match="method plugin plug_clash failed to load: KeyError: .*'good' is already registered"):
        registry.load_plugins(["plug_clash"], entry_points=False, strict=True)
    with pytest.raises(PluginError, match="method plugin no_such_module failed to load: ModuleNotFoundError"):
        registry.load_plugins(["no_such_module"], entry_points=False, strict=True)
    assert registry.list() == ["good"]


def test_a_plugin_error_names_its_file_and_line(plugin_world, tmp_path):
    """Where the plugin broke: the line that raised (not the import machinery's), or where its syntax is wrong."""
    registry, _, _ = plugin_world
    mods = tmp_path / "mods"
    (mods / "plug_typo.py").write_text("X = 1\n\ndef f(:\n    pass\n")
    (mods / "plug_raises.py").write_text("import os\n\n\nvalue = {}['missing']\n")
    with pytest.raises(PluginError, match=r"plug_typo failed to load: SyntaxError: .* \(at .*plug_typo.py, line 3\)"):
        registry.load_plugins(["plug_typo"], entry_points=False, strict=True)
    registry.load_plugins(["plug_raises"], entry_points=False, strict=False)
    why = registry.plugin_errors["plug_raises"]
    assert why.startswith("KeyError: 'missing'") and why.endswith(f"(at {mods / 'plug_raises.py'}, line 4)"), why
    with pytest.raises(PluginError) as missing:  # no file of its own: no location is made up
        registry.load_plugins(["no_such_module_either"], entry_points=False, strict=True)
    assert "(at " not in str(missing.value)


def test_the_built_in_methods_are_not_plugins():
    assert {"floor", "baseline", "baseline-en", "nrccr", "cl2cm", "uml", "one_to_k"} <= set(METHODS.list(plugins=False))
    assert all(METHODS.plugin_of(name) is None and METHODS.get(name).__module__.startswith("ccr_core.methods.")
               for name in METHODS.list(plugins=False))


# --------------------------------------------------------------------------------------------------
# the checks a plugin's author runs (ccr_core.testing)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["floor", "baseline-en", "uml"])
def test_check_method_passes_built_in_methods(name):
    check_method(name)


class UnnormalisedConfig(MethodConfig):
    pass


class Unnormalised(CCRMethod):
    """Forgets the L2 normalisation of its text embeddings."""

    name = "unnormalised"

    def __init__(self, config, text_top=None):
        super().__init__(config, text_top)
        self.text_map = torch.nn.Linear(config.text_dim, config.embed_dim)
        self.visual_map = torch.nn.Linear(config.visual_dim, config.embed_dim)

    def encode_text(self, text, lang=None):
        return self.text_map(self.backbone_states(text).mean(dim=1))  # (B, E), not normalised

    def encode_visual(self, visual, frames=None, frame_mask=None):
        return torch.nn.functional.normalize(self.visual_map(visual if frames is None else frames.mean(dim=1)), dim=-1)

    def loss(self, batch):
        v, t = self.encode_visual(batch["visual"]), self.encode_text(batch["text"]["en"])
        return {"loss": -(v * t).sum(dim=-1).mean()}


def test_check_method_names_what_a_broken_method_gets_wrong(monkeypatch):
    monkeypatch.setitem(METHODS._entries, "unnormalised", Unnormalised)
    with pytest.raises(AssertionError, match="method 'unnormalised' fails the 'encoders' check: encode_text embeddings are not unit vectors"):
        check_method("unnormalised", only=["encoders"])
    with pytest.raises(AssertionError, match="fails the 'grid' check: the grid cannot build 'unnormalised' with {'head': 'linear'}"):
        check_method("unnormalised", only=["grid"])
    with pytest.raises(UnknownNameError):
        check_method("no-such-method")


# --------------------------------------------------------------------------------------------------
# the example package, end to end, without editing ccr_core
# --------------------------------------------------------------------------------------------------
def test_ccr_train_help_lists_installed_plugins_and_names_a_broken_one(tmp_path):
    site = example_site(tmp_path / "site")
    install_as_distribution(site, "broken-dist", {"broken": "no_such_module_anywhere"})
    run = subprocess.run([sys.executable, "-m", "ccr_core.cli", "train", "--help"], capture_output=True, text=True, timeout=120,
                         env=plugin_env(site, EXAMPLE / "src", COLUMNS="400"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    help_text = " ".join(run.stdout.split())
    assert "sigmoid (plugin sigmoid = ccr_sigmoid (ccr-sigmoid-example))" in help_text
    assert "plugin broken = no_such_module_anywhere (broken-dist) failed to load: ModuleNotFoundError" in help_text
    assert "method plugin broken = no_such_module_anywhere (broken-dist) failed to load" in run.stderr  # a warning, once


def test_plugin_option_of_a_missing_module_is_one_clear_error(capsys):
    from ccr_core.cli import main

    assert main(["--plugin", "no_such_plugin_module", "train", "--method", "x", "--data", "y"]) == 2
    assert "ccr: error: method plugin no_such_plugin_module failed to load: ModuleNotFoundError" in capsys.readouterr().err


TINY_TRAIN = {"batch_size": 4, "lr": 1e-3, "targets_per_batch": 0, "text_backbone": "tiny-text", "visual_backbone": "tiny-visual"}


@pytest.fixture
def sigmoid_registered(monkeypatch):
    """The example in this process: already there when installed (entry point), else by module name (``--plugin``)."""
    from ccr_core.methods import load_plugins

    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    load_plugins(["ccr_sigmoid"])
    assert "sigmoid" in METHODS and METHODS.plugin_of("sigmoid") is not None


@pytest.mark.slow
def test_example_plugin_trains_enters_the_grid_results_md_and_the_dashboard(tmp_path, monkeypatch, sigmoid_registered):
    import functools

    from ccr_core import experiments
    from ccr_core.study import records
    from ccr_core.study.grid import PROTOCOL, Run, WorldProtocol

    bundle = make_tiny_bundle(tmp_path / "bundle", n_images=45, langs=("en", "de", "fr"), with_mt=True)
    # ccr train, in its own process, finds the installed plugin by its entry point
    site = example_site(tmp_path / "site")
    run = subprocess.run([sys.executable, "-m", "ccr_core.cli", "train", "--method", "sigmoid", "--data", str(bundle), "--out", str(tmp_path / "cli-run"),
                          "--quiet", *[f"{k}={v}" for k, v in TINY_TRAIN.items()], "max_steps=3", "epochs=1"],
                         capture_output=True, text=True, timeout=300, env=plugin_env(site, EXAMPLE / "src", CCR_WORKSPACE=str(tmp_path / "ws")))
    assert run.returncode == 0, run.stderr[-2000:]
    assert (tmp_path / "cli-run" / "best" / "manifest.json").exists() and "best validation" in run.stdout

    # the grid: `--methods floor sigmoid`, the same steps, seeds and settings as the built-ins
    monkeypatch.setenv("CCR_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setitem(PROTOCOL, "tiny", WorldProtocol(train=TINY_TRAIN, steps=4, noise={"common": (0.0,), "published": (0.0,)},
                                                        seeds=(0, 1), data=str(bundle)))
    monkeypatch.setattr(records, "repo_results_dir", lambda: tmp_path / "results")
    monkeypatch.setattr(experiments, "WORLDS", ("tiny",))
    monkeypatch.setattr(experiments, "REPO_ROOT", tmp_path)
    shutil.copy(REPO / "README.md", tmp_path / "README.md")
    monkeypatch.setattr(experiments, "write_readme_table", functools.partial(experiments.write_readme_table, tmp_path / "README.md"))
    assert experiments.main(["--world", "tiny", "--methods", "floor", "sigmoid", "--quiet"]) == 0
    assert not (tmp_path / "results").exists() and not (tmp_path / "RESULTS.md").exists()  # the grid writes the workspace only
    assert (tmp_path / "README.md").read_text() == (REPO / "README.md").read_text()
    assert experiments.main(["--world", "tiny", "--publish", "--quiet"]) == 0
    results = experiments.read_json(tmp_path / "results" / "protocol-tiny.json")
    mine = [r for r in results if r["method"] == "sigmoid"]
    assert {(r["setting"], r["seed"]) for r in mine} == {("common", 0), ("common", 1), ("published", 0), ("published", 1)}
    assert {r["budget"]["steps"] for r in results} == {4}
    assert [r for r in mine if r["setting"] == "common"][0]["train_config"]["method_config"]["head"] == "linear"
    md = (tmp_path / "RESULTS.md").read_text()
    assert md.count("| sigmoid | 0 | 2 |") == 2  # one row per setting, 2 seeds, with intervals

    # the dashboard: the model list (a checkpoint folder like any other) and the Leaderboard's intervals
    import ccr_core.paths
    from ccr_core.dashboard import leaderboard
    from ccr_core.dashboard.world import load_world

    checkpoints = tmp_path / "checkpoints" / "tiny"
    for method in ("floor", "sigmoid"):
        shutil.copytree(Run("tiny", "published" if method != "floor" else "common", method, 0.0, 0).folder() / "best", checkpoints / method)
    world = load_world(bundle, checkpoints, tmp_path / "ws")
    assert "sigmoid" in world.model_names() and world.model("sigmoid").method == "sigmoid"
    monkeypatch.setattr(ccr_core.paths, "REPO_ROOT", tmp_path)
    table = leaderboard.interval_table(world)
    assert set(table[table["method"] == "sigmoid"]["setting"]) == {"common", "published"}
    board = leaderboard.leaderboard_table(world)
    assert "sigmoid" in set(board["method"])


SMALL_LOSS = REPO / "examples" / "ccr_small_loss"


@pytest.mark.slow
def test_small_loss_example_runs_in_the_grid_through_the_plugin_option(tmp_path, monkeypatch):
    """The second example, not installed: ``--plugin ccr_small_loss`` imports it, and the grid trains and scores it
    like a built-in (the smallest grid: one setting, one seed, 2 steps)."""
    from ccr_core import experiments
    from ccr_core.study.grid import PROTOCOL, WorldProtocol

    monkeypatch.syspath_prepend(str(SMALL_LOSS / "src"))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SMALL_LOSS / "src"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("CCR_PLUGINS", "")  # restored after the test: the grid adds its --plugin modules here
    bundle = make_tiny_bundle(tmp_path / "bundle", n_images=45, langs=("en", "de", "fr"), with_mt=True)
    monkeypatch.setenv("CCR_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setitem(PROTOCOL, "tiny", WorldProtocol(train=TINY_TRAIN, steps=2, noise={"common": (0.0,), "published": (0.0,)},
                                                        seeds=(0,), data=str(bundle)))
    from ccr_core.study import records

    monkeypatch.setattr(records, "repo_results_dir", lambda: tmp_path / "results")
    monkeypatch.setattr(experiments, "WORLDS", ("tiny",))
    monkeypatch.setattr(experiments, "REPO_ROOT", tmp_path)
    monkeypatch.setattr(experiments, "write_readme_table", lambda *a, **k: None)
    assert experiments.main(["--world", "tiny", "--plugin", "ccr_small_loss", "--methods", "small_loss", "--settings", "common",
                             "--quiet"]) == 0
    assert experiments.main(["--world", "tiny", "--plugin", "ccr_small_loss", "--publish"]) == 0  # publishing trains nothing
    assert os.environ["CCR_PLUGINS"].endswith("ccr_small_loss")  # and every worker imports it too
    results = experiments.read_json(tmp_path / "results" / "protocol-tiny.json")
    (mine,) = [r for r in results if r["method"] == "small_loss"]
    assert mine["setting"] == "common" and mine["budget"]["steps"] == 2
    assert mine["train_config"]["method_config"]["head"] == "linear"
    assert 0 <= mine["groups"]["de"]["SumR"] <= 600


@pytest.mark.slow
def test_ccr_train_protocol_trains_the_grids_cell(tmp_path, monkeypatch, capsys):
    """``ccr train --protocol WORLD`` takes the grid's budget and settings for that world (the cell at --noise and
    --seed), not TrainConfig's defaults; --data or --config beside it is one clear error."""
    from dataclasses import asdict

    from ccr_core import cli
    from ccr_core.study.grid import PROTOCOL, Run, WorldProtocol
    from ccr_core.training.checkpoint import verify_checkpoint

    bundle = make_tiny_bundle(tmp_path / "bundle", n_images=45, langs=("en", "de", "fr"), with_mt=True)
    monkeypatch.setenv("CCR_WORKSPACE", str(tmp_path / "ws"))
    monkeypatch.setitem(PROTOCOL, "tiny", WorldProtocol(train=TINY_TRAIN, steps=2, noise={"common": (0.0, 0.4), "published": (0.0,)},
                                                        data=str(bundle)))
    parser = cli.build_parser()
    args = parser.parse_args(["train", "--method", "baseline", "--protocol", "tiny", "--noise", "0.4", "--seed", "2"])
    cfg = cli.train_config_of(args)
    assert asdict(cfg) == asdict(Run("tiny", "common", "baseline", 0.4, 2).train_config())
    assert (cfg.max_steps, cfg.lr, cfg.seed, cfg.noise, cfg.method_config) == (2, 1e-3, 2, 0.4, {"head": "linear"})
    assert cfg.patience > cfg.epochs  # early stopping off, as in the grid
    published = cli.train_config_of(parser.parse_args(["train", "--method", "baseline", "--protocol", "tiny", "--setting", "published"]))
    assert "head" not in published.method_config and published.seed == 0
    for extra in (["--data", str(bundle)], ["--config", str(tmp_path / "c.json")]):
        assert cli.main(["train", "--method", "baseline", "--protocol", "tiny", *extra]) == 2
        assert "leave out --data and --config" in capsys.readouterr().err
    assert cli.main(["train", "--method", "baseline"]) == 2 and "--data" in capsys.readouterr().err

    assert cli.main(["train", "--method", "baseline", "--protocol", "tiny", "--quiet", "--out", str(tmp_path / "run")]) == 0
    meta = verify_checkpoint(tmp_path / "run" / "last")
    assert meta["train_state"]["step"] == 2 and meta["train_config"]["batch_size"] == 4 and meta["method_config"]["head"] == "linear"

    # the same record files under the same names as a grid run, and the same record for the same cell
    from ccr_core.io import read_json
    from ccr_core.paths import RESULT_FILE, SUMMARY_FILE, TRAIN_CONFIG_FILE
    from ccr_core.study.runner import Workbenches, run_one
    assert "wrote" in capsys.readouterr().out
    grid_run = Run("tiny", "common", "baseline", 0.0, 0)
    run_one(grid_run, Workbenches(progress=False), progress=False)
    names = {TRAIN_CONFIG_FILE, SUMMARY_FILE, RESULT_FILE, "best", "last"}
    assert names <= {p.name for p in (tmp_path / "run").iterdir()} and names <= {p.name for p in grid_run.folder().iterdir()}
    mine, grids = read_json(tmp_path / "run" / RESULT_FILE), read_json(grid_run.folder() / RESULT_FILE)
    assert mine["setting"] == "ccr train" and mine["scored"] == grids["scored"] and mine["train_config"] == grids["train_config"]
    assert mine["groups"] == grids["groups"] and mine["checkpoint_sha256"] == grids["checkpoint_sha256"]
    assert set(mine) == set(grids) - {"variant"}


def test_ccr_train_help_says_what_protocol_does(capsys):
    from ccr_core import cli

    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--protocol WORLD" in text and "the comparison grid's cell for this world" in text and "demo-world" in text
