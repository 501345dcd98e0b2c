"""`ccr benchmark xflickrco|multi30k`: a standard test set from its upstream layout, with the flaws
the real files have (empty captions, Flickr30k ids over Flickr8k photos, a partial image folder,
gallery images that are training images), evaluated per language with MRV and an overlap warning;
and `ccr eval` on a bundle a model was not trained on."""
from __future__ import annotations

import json
import shutil
import time

import pytest

from benchmark_fixtures import FLICKR_IDS, flickr8k_name, make_flickr8k_folder, make_multi30k, make_xflickrco, write_photo
from ccr_core.data.test_sets import BenchmarkConfig, build_benchmark_bundle, training_overlap, xflickrco_files

PRESENT = [0, 1, 2, 3, 5, 6, 8, 9, 11]  # 9 of the 12 Flickr images at hand, no COCO image
COPIED = [0, 2, 5]  # gallery photos whose exact bytes are training images (copied into another folder)
REENCODED = 8  # a gallery photo whose Flickr id is a training image's, with other bytes (a re-encoded copy)


def ccr_main(capsys, *args) -> tuple[int, str, str]:
    from ccr_core.cli import main

    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Photos, xFlickr&CO and Multi30K files, and a tiny checkpoint trained on a bundle that shares images with the gallery."""
    import os

    from ccr_core.data.importer import import_captions
    from ccr_core.training.train import TrainConfig, train

    root = tmp_path_factory.mktemp("bench")
    photos = make_flickr8k_folder(root / "Flicker8k_Dataset", PRESENT)
    annotations = make_xflickrco(root / "xFlickrCO" / "annotations", langs=("de", "en", "ja"), empty={"de": [2], "ja": [6, 14]})
    multi30k = make_multi30k(root / "multi30k" / "data", empty={"fr": [3]})
    # The training bundle: byte copies of three gallery photos, a re-encoded one under its Flickr8k name, four others.
    train_dir = root / "train_photos"
    for k in COPIED:
        train_dir.mkdir(parents=True, exist_ok=True)
        shutil.copy(photos / flickr8k_name(FLICKR_IDS[k]), train_dir / f"copy{k}.jpg")
    write_photo(train_dir / flickr8k_name(FLICKR_IDS[REENCODED]), 200)
    for k in range(4):
        write_photo(train_dir / f"other{k}.jpg", 300 + k)
    names = [f"copy{k}.jpg" for k in COPIED] + [flickr8k_name(FLICKR_IDS[REENCODED])] + [f"other{k}.jpg" for k in range(4)]
    rows = []
    for i, name in enumerate(names):
        split = "train" if i < 5 else "val" if i < 7 else "test"
        rows.append({"image": name, "lang": "en", "text": f"english {i}", "split": split})
        rows.append({"image": name, "lang": "de", "text": f"deutsch {i}", "split": split, "source": "mt:sim" if split == "train" else "human"})
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bundle = import_captions(train_dir, root / "train.jsonl", root / "trainset")
    workspace = root / "workspace"
    old = os.environ.get("CCR_WORKSPACE")
    os.environ["CCR_WORKSPACE"] = str(workspace)
    try:
        cfg = TrainConfig(method="baseline", data=str(bundle), text_backbone="tiny-text", visual_backbone="tiny-visual", batch_size=4, epochs=1)
        train(cfg, root / "run", workspace, progress=False)
    finally:
        os.environ.pop("CCR_WORKSPACE") if old is None else os.environ.__setitem__("CCR_WORKSPACE", old)
    return {"root": root, "photos": photos, "annotations": annotations, "multi30k": multi30k, "run": root / "run", "workspace": workspace}


@pytest.fixture
def workspace(world, monkeypatch):
    monkeypatch.setenv("CCR_WORKSPACE", str(world["workspace"]))
    return world["workspace"]


def test_xflickrco_layout_is_found_from_either_folder(world):
    files = xflickrco_files(world["annotations"])
    assert [f.parent.name for f in files] == ["de", "en", "ja"]
    assert xflickrco_files(world["annotations"].parent) == files
    with pytest.raises(FileNotFoundError, match="no <lang>/test.jsonl"):
        xflickrco_files(world["root"])


def test_benchmark_bundle_finds_the_photos_at_hand_and_counts_the_rest(world, workspace):
    cfg = BenchmarkConfig("xflickrco", world["photos"], world["annotations"])
    bundle = build_benchmark_bundle(cfg, workspace)
    assert len(bundle.items) == len(PRESENT) and {it.split for it in bundle.items} == {"test"}
    report = bundle.manifest.extra["import"]
    assert report["images"]["found"] == 9 and report["images"]["absent"] == 7 and report["images"]["by_rule"] == {"flickr30k-id": 9}
    assert report["skipped"]["by_reason"] == {"image not found": 3 * 7 - 1, "empty caption": 3}  # ja line 14 (COCO) is empty: counted as empty
    assert build_benchmark_bundle(cfg, workspace).root == bundle.root  # the same inputs: the same bundle, reused
    (world["photos"] / "unrelated.txt").write_text("x")
    try:
        assert build_benchmark_bundle(cfg, workspace).root != bundle.root  # the folder changed: a new bundle (fresh caches)
    finally:
        (world["photos"] / "unrelated.txt").unlink()


def test_training_overlap_by_content_and_by_flickr_id(world, workspace):
    from ccr_core.training.checkpoint import verify_checkpoint

    bundle = build_benchmark_bundle(BenchmarkConfig("xflickrco", world["photos"], world["annotations"]), workspace)
    overlap = training_overlap(bundle, verify_checkpoint(world["run"] / "best"))
    gallery_id = {k: flickr8k_name(FLICKR_IDS[k])[:-4] for k in PRESENT}
    assert overlap.checked and overlap.trained_on == "trainset"
    assert sorted(overlap.by_content) == sorted(gallery_id[k] for k in COPIED)
    assert overlap.by_flickr_id == [gallery_id[REENCODED]]  # the copies were renamed, so only content finds them
    assert sorted(overlap.items) == sorted(gallery_id[k] for k in COPIED + [REENCODED])
    missing = training_overlap(bundle, {"train_config": {"data": str(world["root"] / "nowhere")}})
    assert not missing.checked and "not at hand" in missing.note


def test_cli_xflickrco_table_mrv_and_overlap_warning(capsys, world, workspace):
    started = time.perf_counter()
    code, out, err = ccr_main(capsys, "benchmark", "xflickrco", "--annotations", world["annotations"], "--images", world["photos"],
                              world["run"], "--quiet", "--out", world["root"] / "res")
    assert code == 0, err
    assert "images: 9 of the 16 named found" in out and "(9 by flickr30k-id); 7 absent" in out
    assert f"{world['annotations'] / 'de' / 'test.jsonl'}:2: caption text is empty" in out
    assert ("WARNING run/best: 4 of the 9 gallery images are in the training split of trainset, which it was trained on "
            "(3 by image content, 1 more by Flickr id); pass --exclude-trained to drop them") in out
    rows = [line for line in out.splitlines() if line.startswith("| run/best |")]
    assert [row.split(" | ")[2] for row in rows] == ["de", "en", "ja"]
    assert [row.split(" | ")[3] for row in rows] == ["8", "9", "8"]  # de line 2 and ja line 6 are empty
    results = json.loads((world["root"] / "res" / "results.json").read_text())
    result = results["results"][0]
    assert result["overlap"] == {"checked": True, "images": 4, "by_content": 3, "by_flickr_id": 1, "excluded": False}
    assert "train_seconds" not in result and result["trained_on"] == "trainset"
    mrv = result["mrv"]
    assert mrv["languages"] == ["de", "en", "ja"] and mrv["n_instances"] == 7  # images captioned in all three
    assert f"MRV over de, en, ja (7 images captioned in all): run/best i2t {mrv['mrv_i2t']:.2f}" in out
    # SumR of a row is the sum of its six recalls
    cells = [float(c) for c in rows[1].strip(" |").split(" | ")[4:]]
    assert abs(sum(cells[:6]) - cells[6]) < 0.2
    assert time.perf_counter() - started < 120


def test_cli_exclude_trained_drops_the_overlap_from_the_gallery(capsys, world, workspace):
    code, out, err = ccr_main(capsys, "benchmark", "xflickrco", "--annotations", world["annotations"], "--images", world["photos"],
                              world["run"], "--quiet", "--exclude-trained", "--out", world["root"] / "res-x")
    assert code == 0, err
    assert "dropped from its evaluation (--exclude-trained)" in out
    rows = [line for line in out.splitlines() if line.startswith("| run/best |")]
    assert [row.split(" | ")[3] for row in rows] == ["4", "5", "5"]  # 9 - 4 overlapping; de has no caption of image 1 (line 2 is empty)
    result = json.loads((world["root"] / "res-x" / "results.json").read_text())["results"][0]
    assert result["overlap"]["excluded"] and result["mrv"]["n_instances"] == 4  # 3, 6, 9, 11: 1 lacks de, the rest were training images


def test_cli_multi30k_reads_the_raw_layout(capsys, world, workspace):
    code, out, err = ccr_main(capsys, "benchmark", "multi30k", "--annotations", world["multi30k"], "--images", world["photos"],
                              world["run"], "--quiet", "--out", world["root"] / "res-m")
    assert code == 0, err
    assert "images: 9 of the 12 named found" in out and "test_2016_flickr.fr.gz:3: caption text is empty" in out
    rows = [line for line in out.splitlines() if line.startswith("| run/best |")]
    assert [row.split(" | ")[2] for row in rows] == ["en", "de", "fr", "cs"]  # the field's order
    assert [row.split(" | ")[3] for row in rows] == ["9", "9", "8", "9"]


def test_cli_benchmark_refuses_bad_input_in_one_line(capsys, world, workspace):
    code, out, err = ccr_main(capsys, "benchmark", "xflickrco", "--annotations", world["root"], "--images", world["photos"], world["run"])
    assert code == 2 and err.startswith("ccr: error: ") and "no <lang>/test.jsonl" in err
    code, out, err = ccr_main(capsys, "benchmark", "xflickrco", "--annotations", world["annotations"], "--images", world["photos"],
                              world["root"] / "no-run")
    assert code == 2 and "not a complete checkpoint" in err
    code, out, err = ccr_main(capsys, "benchmark", "xflickrco", "--annotations", world["annotations"], "--images", world["photos"],
                              world["run"], "--strict", "--quiet")
    assert code == 2 and "caption text is empty" in err


def test_cli_eval_on_a_foreign_bundle_names_the_training_bundle(capsys, world, workspace):
    bundle = build_benchmark_bundle(BenchmarkConfig("xflickrco", world["photos"], world["annotations"]), workspace)
    code, out, err = ccr_main(capsys, "eval", world["run"], "--data", bundle.root, "--quiet", "--out", world["root"] / "ev")
    assert code == 0, err
    header = next(line for line in out.splitlines() if line.startswith("| model"))
    assert "trained on" in header and "train s" not in header
    assert "| trainset |" in out
    result = json.loads((world["root"] / "ev" / "results.json").read_text())[0]
    assert "train_seconds" not in result and (result["trained_on"], result["evaluated_on"]) == ("trainset", bundle.name)
    code, out, err = ccr_main(capsys, "eval", world["run"], "--quiet", "--out", world["root"] / "ev-own")  # its own bundle: seconds shown
    assert code == 0, err
    assert "train s" in next(line for line in out.splitlines() if line.startswith("| model"))


@pytest.mark.shared_data
@pytest.mark.slow
def test_multi30k_on_the_real_mirror_finds_the_flickr8k_photos_and_the_training_overlap(capsys, shared_data, tmp_path, monkeypatch):
    """Multi30K test_2016_flickr over the Flickr8k photos with two shipped Flickr8k-ML checkpoints: the 243 test images that are
    Flickr8k photos are found, and the overlap with Flickr8k's train split (which those models trained on) is counted --
    here with flickr8k-ml never built into the (empty) workspace, so its splits come from the mirror's upstream files."""
    from conftest import REPO
    from ccr_core.data import formats

    monkeypatch.setenv("CCR_WORKSPACE", str(tmp_path))
    monkeypatch.setenv("CCR_SHARED_DATA", str(shared_data))
    # the expected counts, independently: test ids -> Flickr8k names by prefix -> Flickr8k's train list
    test_ids = [name.removesuffix(".jpg") for name in formats.read_image_list(shared_data / "multi30k/data/task1/image_splits/test_2016_flickr.txt")]
    photo_of = {p.name.split("_")[0]: p.stem for p in (shared_data / "flickr8k/images").iterdir()}
    train = set(formats.read_image_list(shared_data / "flickr8kcn/data/flickr8ktrain.txt"))
    found = [photo_of[i] for i in test_ids if i in photo_of]
    in_train = sum(stem in train for stem in found)
    assert len(found) == 243 and 0 < in_train < 243

    checkpoints = [REPO / "checkpoints/flickr8k-ml/baseline-ft", REPO / "checkpoints/flickr8k-ml/nrccr-ft"]  # fine-tuned image tops
    started = time.perf_counter()
    code, out, err = ccr_main(capsys, "benchmark", "multi30k", "--annotations", shared_data / "multi30k/data",
                              "--images", shared_data / "flickr8k/images", *checkpoints, "--quiet", "--out", tmp_path / "res")
    seconds = time.perf_counter() - started
    assert code == 0, err
    assert "images: 243 of the 1000 named found" in out and "(243 by flickr30k-id); 757 absent" in out
    for name in ("baseline-ft", "nrccr-ft"):
        assert f"WARNING {name}: {in_train} of the 243 gallery images are in the training split of flickr8k-ml" in out
        assert f"{name}: flickr8k-ml is not built; its splits were read from the upstream files in {shared_data}" in out
    # both fine-tuned tops start at the same block: one map cache, of the 243 gallery images, unmirrored (evaluation only)
    (maps,) = [json.loads(p.read_text()) for p in (tmp_path / "feature_maps").rglob("meta.json")]
    assert len(maps["ids"]) == 243 and maps["flips"] is False
    run = json.loads((tmp_path / "res" / "results.json").read_text())
    for result in run["results"]:
        assert [result["groups"][lang]["n_images"] for lang in ("en", "de", "fr", "cs")] == [243] * 4
        assert result["groups"]["en"]["t2i_R@10"] > 5 * 100 * 10 / 243  # far above chance (4.1 %)
        assert result["mrv"]["languages"] == ["en", "de", "fr", "cs"] and result["mrv"]["n_instances"] == 243
    print(f"ccr benchmark multi30k, two checkpoints, cold caches: {seconds:.0f} s")


def test_cli_eval_says_which_checkpoint_it_scored_and_warns_on_mixed_budgets(capsys, world, workspace):
    """``ccr eval`` scores ``best/`` by default or ``last/`` (what the grid scores) and names it; models scored at different
    budgets get a warning (a gap between them may be the budget)."""
    run = world["run"]
    code, out, err = ccr_main(capsys, "eval", run, "--checkpoint", "last", "--quiet", "--out", world["root"] / "ev-last")
    assert code == 0, err
    last_steps = json.loads((run / "last" / "config.json").read_text())["train_state"]["step"]
    assert f"scoring {run / 'last'} (last; {last_steps} steps)" in err and "different budgets" not in err
    code, out, err = ccr_main(capsys, "eval", run, run / "last", "--quiet", "--out", world["root"] / "ev-both")
    best_steps = json.loads((run / "best" / "config.json").read_text())["train_state"]["step"]
    assert code == 0 and f"scoring {run / 'best'} (best; {best_steps} steps)" in err
    assert ("warning: these models were scored at different budgets" in err) == (best_steps != last_steps)
