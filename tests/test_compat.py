"""The torchvision shim works for any script in the venv, not only after ``import ccr_core``: plain
``transformers`` (AutoModel of the converted e5), ``timm`` and ``open_clip`` import in a fresh
interpreter whose site-packages holds the ``.pth`` + hook module that ``make setup`` installs."""
from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from ccr_core import _compat

USER_SCRIPT = """
import sys
from transformers import AutoModel, BertModel
import timm, open_clip
model = AutoModel.from_pretrained(sys.argv[1])
print("loaded", type(model).__name__, "ccr_core imported:", "ccr_core" in sys.modules)
"""


def _fresh_python(code: str, *args: str, site_dir: Path | None = None, without_pth: bool = False) -> subprocess.CompletedProcess:
    """A new interpreter that never imports ccr_core itself; ``site_dir`` is processed like site-packages
    (``site.addsitedir`` is what ``site`` does at start-up for every site-packages folder, .pth files included).
    ``without_pth``: site-packages on the path but none of its .pth files run (``-S``), i.e. this venv as it
    would be without the installed hook."""
    import site

    prelude = f"import site; site.addsitedir({str(site_dir)!r})\n" if site_dir else ""
    flags = []
    if without_pth:
        flags = ["-S"]
        prelude = f"import sys; sys.path.extend({site.getsitepackages()!r})\n" + prelude
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([sys.executable, *flags, "-c", prelude + code, *args], capture_output=True, text=True, timeout=300, env=env, cwd="/")


@pytest.fixture(scope="module")
def e5_dir() -> Path:
    from ccr_core.backbones.e5_convert import default_e5_dir

    folder = default_e5_dir()
    if not (folder / "config.json").exists():
        pytest.skip(f"the converted e5 is not in {folder} (run `ccr prepare-models`)")
    return folder


def test_the_installed_hook_makes_plain_imports_work_without_ccr_core(tmp_path, e5_dir):
    written = _compat.install(tmp_path)
    assert sorted(Path(p).name for p in written) == sorted([_compat.PTH_FILE, _compat.HOOK_MODULE + ".py"])
    result = _fresh_python(USER_SCRIPT, str(e5_dir), site_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded BertModel ccr_core imported: False" in result.stdout
    assert _compat.install(tmp_path) == written  # idempotent


def test_without_the_hook_this_torchvision_build_fails_the_same_script(tmp_path, e5_dir):
    """The control: the problem the hook solves exists on this install (skipped where torchvision loads natively)."""
    probe = _fresh_python("import torch, glob, os, importlib.util as u\n"
                          "spec = u.find_spec('torchvision')\n"
                          "lib = glob.glob(os.path.join(spec.submodule_search_locations[0], '_C*.so'))\n"
                          "torch.ops.load_library(lib[0])", without_pth=True)
    if probe.returncode == 0:
        pytest.skip("this torchvision build loads with this torch: nothing to shim")
    result = _fresh_python(USER_SCRIPT, str(e5_dir), without_pth=True)  # the venv's installed hook left out
    assert result.returncode != 0 and "torchvision::nms" in result.stderr + result.stdout


def test_a_broken_hook_never_stops_the_interpreter(tmp_path):
    (tmp_path / _compat.PTH_FILE).write_text(_compat.PTH_LINE)  # the .pth without its module (a half-removed install)
    result = _fresh_python("print('started')", site_dir=tmp_path)
    assert result.returncode == 0 and result.stdout.strip() == "started" and result.stderr == ""


def test_the_hook_waits_for_torchvision_and_steps_aside(tmp_path):
    _compat.install(tmp_path)
    code = ("import sys\n"
            "hooked = [type(f).__name__ for f in sys.meta_path]\n"
            "print('torch at start:', 'torch' in sys.modules, '_FirstTorchvisionImport' in hooked)\n"
            "import torchvision\n"
            "print('after:', any(type(f).__name__ == '_FirstTorchvisionImport' for f in sys.meta_path))\n")
    result = _fresh_python(code, site_dir=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "torch at start: False True" in result.stdout and "after: False" in result.stdout


def test_this_venv_has_the_hook_installed(e5_dir):
    """`make setup` installs it into the venv; then the script runs with no prelude at all."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("not running in a virtual environment")
    if not _compat.installed():
        message = f"the torchvision shim is not installed in {sysconfig.get_paths()['purelib']}: run `make setup`"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    result = _fresh_python(USER_SCRIPT, str(e5_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "loaded BertModel ccr_core imported: False" in result.stdout
