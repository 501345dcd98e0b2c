"""Every dashboard tab's logic (ccr_core.dashboard), without Gradio, on a small fixture world: a tiny
bundle in en/de/zh with machine translations and labelled noisy correspondence, tiny backbones, and
a few methods trained for a few steps each."""
from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import make_tiny_bundle

FIXTURE_METHODS = ("baseline", "uml", "one_to_k")
TINY = dict(text_backbone="tiny-text", visual_backbone="tiny-visual", batch_size=8)
NOISE_RATE = 0.3


def _chinese(text: str) -> str:
    # make_tiny_bundle writes "zh caption 7"; real CJK text exercises fonts and language guessing.
    number = text.split()[-1]
    return f"彩色方块{number}号的机器翻译" if " mt of " in text else f"一个彩色方块，编号{number}"


def build_fixture_world(base: Path) -> dict:
    """Bundle + checkpoints + workspace under ``base`` (built once; a marker file makes reruns free)."""
    from ccr_core.data.bundle import load_bundle, save_bundle
    from ccr_core.methods import METHODS
    from ccr_core.training.train import TrainConfig, prepare_workbench, train

    paths = {"bundle": base / "bundle", "checkpoints": base / "checkpoints", "workspace": base / "ws"}
    marker = base / "READY"
    if marker.exists():
        return paths
    make_tiny_bundle(paths["bundle"], n_images=45, langs=("en", "de", "zh"), with_mt=True)
    bundle = load_bundle(paths["bundle"])
    captions = [dataclasses.replace(c, text=_chinese(c.text)) if c.lang == "zh" else c for c in bundle.captions]
    # Noisy correspondence: a share of training MT captions swap texts with another image's MT.
    rng = random.Random(0)
    mts = [i for i, c in enumerate(captions) if c.source.startswith("mt:") and c.split == "train"]
    noisy = set(rng.sample(mts, int(NOISE_RATE * len(mts))))
    texts = {}
    for lang in ("de", "zh"):  # rotate texts among the chosen captions of one language
        order = sorted(i for i in noisy if captions[i].lang == lang)
        texts.update({i: captions[j].text for i, j in zip(order, order[1:] + order[:1])})
    captions = [dataclasses.replace(c, text=texts[i]) if i in texts else c for i, c in enumerate(captions)]
    labels = {captions[i].id: ("noisy-correspondence" if i in noisy else "clean") for i in mts}
    save_bundle(paths["bundle"], bundle.manifest, bundle.items, captions, labels)
    bundle = load_bundle(paths["bundle"])
    cfg = TrainConfig(method="baseline", data=str(bundle.root), **TINY)
    bench = prepare_workbench(cfg, paths["workspace"], bundle, progress=False)
    for method in FIXTURE_METHODS:
        if method not in METHODS:
            continue
        run = base / "runs" / method
        train(TrainConfig(method=method, data=str(bundle.root), epochs=4, **TINY), run, paths["workspace"], progress=False, bench=bench)
        (paths["checkpoints"] / method).parent.mkdir(parents=True, exist_ok=True)
        (run / "best").rename(paths["checkpoints"] / method)
    marker.write_text("ok")
    return paths


@pytest.fixture(scope="session")
def world_paths(tmp_path_factory) -> dict:
    return build_fixture_world(tmp_path_factory.getbasetemp() / "dashboard-world")


@pytest.fixture(scope="session")
def world(world_paths):
    from ccr_core.dashboard.world import load_world

    return load_world(world_paths["bundle"], world_paths["checkpoints"], world_paths["workspace"])


# --------------------------------------------------------------------------------------------------
# world


def test_world_loads_models_embeddings_and_thumbnails(world, world_paths):
    from PIL import Image

    from ccr_core.methods import METHODS

    assert world.model_names() == [m for m in ("baseline", "uml", "one_to_k") if m in METHODS]
    assert len(world.gallery) == 15 and world.languages == ["en", "de", "zh"]
    for m in world.model_list():
        assert m.image_emb.shape[0] == len(world.gallery) and m.caption_emb.shape[0] == len(world.captions)
        assert np.allclose(np.linalg.norm(m.image_emb, axis=1), 1, atol=1e-4)
        assert len(m.checkpoint_hash) == 64
    for item in world.gallery:
        thumb = world.thumbs[item.id]
        assert thumb.parent == world.thumb_dir and thumb.suffix == ".jpg"
        with Image.open(thumb) as im:
            assert im.format == "JPEG" and max(im.size) <= 192
    # Only the thumbnail and export folders are ever served, never the workspace itself.
    served = [Path(p) for p in world.served_dirs()]
    assert all(p.is_relative_to(world.cache_dir) and p != world_paths["workspace"] for p in served)


def test_missing_world_and_checkpoints_say_how_to_build_them(tmp_path, world_paths):
    from ccr_core.dashboard.world import WorldNotBuilt, load_world, resolve_world

    with pytest.raises(WorldNotBuilt, match="ccr data build demo-world"):
        resolve_world("demo-world", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WorldNotBuilt, match="ccr train --method baseline"):
        load_world(world_paths["bundle"], tmp_path / "empty", tmp_path / "ws")


def test_language_guesser_uses_the_worlds_captions_and_scripts(world):
    assert world.guesser.guess("红色的方块") == "zh"
    assert world.guesser.guess("de caption 99") == "de"
    assert world.guesser.guess("en caption 12") == "en"
    assert world.resolve_language("auto", "一个方块") == ("zh", True)
    assert world.resolve_language("de", "anything") == ("de", False)


@pytest.mark.parametrize("text, expected", [
    ("un perro corriendo en la nieve", "es"), ("een hond die in de sneeuw rent", "nl"), ("собака бежит по снегу", "ru"),
    ("karda koşan bir köpek", "tr"), ("seekor anjing berlari di salju", "id"), ("Muž v modré košili", "cs"),
    ("un chien qui court dans la neige", "fr"), ("雪の中を走る犬", "ja"), ("一只狗在雪地里奔跑", "zh"),
    ("ein Hund rennt im Schnee", "de"), ("a dog running in the snow", "en"),
    # too short or too odd for langid to be sure: the world's own caption guesser decides among en/de/zh
    ("de caption 99", "de"), ("en caption 12", "en"),
])
def test_language_detection_is_not_limited_to_the_worlds_languages(world, text, expected):
    assert world.resolve_language("auto", text) == (expected, True)


def test_any_language_the_encoder_knows_can_be_chosen(world):
    from ccr_core.dashboard import search
    from ccr_core.dashboard.world import language_name

    assert world.resolve_language("es", "x") == ("es", False) and language_name("es") == "Spanish"
    assert world.query_languages[:3] == world.languages and len(world.query_languages) > 80
    result = search.text_search(world, "un cuadrado rojo", "auto", ["baseline"], 3)
    assert result.lang == "es" and "Spanish (es, detected)" in result.status()


def test_caption_and_instance_search_find_by_words_and_id(world):
    from ccr_core.dashboard import InputError, consistency, languages, search

    zh = search.find_captions(world, "编号14", "zh")
    assert [cid for _, cid in zh] == [c.id for c in world.captions if c.lang == "zh" and "编号14" in c.text]
    assert search.find_captions(world, "img14#DE#0", "all")[0][1] == "img14#de#0"  # exact id first, any case
    assert len(search.find_captions(world, "", "all", limit=7)) == 7 and search.find_captions(world, "zzz", "all") == []
    assert search.caption_by_id(world, "de caption 14").id == "img14#de#0"  # typed words pick the first match
    with pytest.raises(InputError, match="Choose a test caption"):
        search.caption_by_id(world, "nothing like this")
    assert [v for _, v in languages.find_instances(world, "编号14")] == ["img14"]
    assert [v for _, v in languages.find_instances(world, "img2")] == [it.id for it in world.gallery if "img2" in it.id]
    found = consistency.find_instances(world, "caption", "baseline", "t2i", limit=5)
    assert [v for _, v in found] == [v for _, v in consistency.instance_choices(world, "baseline", "t2i", limit=5)]
    assert [v for _, v in consistency.find_instances(world, "img14", "baseline")] == ["img14"]


def test_a_fresh_workspace_opens_on_the_test_split_and_adds_the_training_pairs_later(world, world_paths, tmp_path):
    from ccr_core.dashboard import InputError, audit, experiment, search
    from ccr_core.dashboard.world import load_world
    from ccr_core.training.text_cache import load_text_cache

    fresh = load_world(world_paths["bundle"], world_paths["checkpoints"], tmp_path / "ws")
    (config, bench), = fresh.benches.items()
    assert config in fresh.pending_training
    assert set(bench.features.ids) == {it.id for it in fresh.gallery}  # features of the test images only
    interim = bench.features.root
    test_texts = {c.text for c in fresh.captions}
    assert set(bench.text_states.meta["texts"]) == test_texts  # text states of the test captions only
    result = search.text_search(fresh, "de caption 5", "auto", ["baseline"], 3)
    assert result.methods[0].target_rank is not None  # search works at once
    with pytest.raises(InputError, match="Preparing the training pairs"):
        audit.audit(fresh, "uml")
    with pytest.raises(InputError, match="Preparing the training pairs"):
        experiment.experiments(fresh).start("baseline", 0.0, 5)
    assert "Starting a run waits for it" in experiment.experiments(fresh).plan("baseline", 0.0, 5)

    fresh.finish_training_caches()
    assert not fresh.pending_training and fresh.training_ready.is_set() and fresh.training_status == ""  # no status once done
    assert len(bench.features.ids) == len(fresh.bundle.items) and not interim.exists()  # the interim cache is gone
    cache = load_text_cache(bench.text_states.root)
    assert len(cache.meta["texts"]) == len(set(cache.meta["texts"])) > len(test_texts)  # appended, each text once
    assert cache.meta["texts"][: len(test_texts)] == sorted(test_texts)  # the test captions first, not recomputed
    # The audit over the swapped-in caches gives the scores of a world whose caches were complete from the start.
    assert np.allclose(audit.audit(fresh, "uml").scores.scores, audit.audit(world, "uml").scores.scores, atol=1e-4)
    # A second start finds the complete caches: nothing pending.
    assert not load_world(world_paths["bundle"], world_paths["checkpoints"], tmp_path / "ws").pending_training


def test_deferred_captions_open_on_the_gallery_and_fill_in_the_same_embeddings(world, world_paths, tmp_path):
    """The app's start (defer_captions): no test-caption text state is encoded before the page; typed
    and caption queries work at once, caption-side views say they wait, and after the background pass
    every model's caption embeddings equal those of a world loaded with its captions from the start."""
    from ccr_core.dashboard import InputError, consistency, leaderboard, projection, search
    from ccr_core.dashboard.world import load_world

    fresh = load_world(world_paths["bundle"], world_paths["checkpoints"], tmp_path / "ws", defer_captions=True)
    (config, bench), = fresh.benches.items()
    assert len(bench.text_states.meta["texts"]) == 0 and len(fresh.pending_captions[config]) == len({c.text for c in fresh.captions})
    assert not fresh.captions_ready.is_set() and "test captions" in fresh.captions_status
    assert all(m.captions is None for m in fresh.model_list())
    for name in fresh.model_names():  # the gallery's embeddings are there already, and the same
        assert np.allclose(fresh.model(name).image_emb, world.model(name).image_emb, atol=1e-6)
    early = search.text_search(fresh, "de caption 5", "auto", ["baseline"], 3)
    assert early.methods[0].target_rank is not None  # a test caption as query: encoded on the spot
    with pytest.raises(InputError, match="test captions"):
        search.image_to_text(fresh, fresh.gallery[0].id, None, ["baseline"], 1)
    with pytest.raises(InputError, match="test captions"):
        consistency.mrv_summary(fresh)
    with pytest.raises(InputError, match="test captions"):
        projection.project(fresh, "baseline", fresh.languages, "PCA", 20, 5, 0.1)
    assert search.fill_when_captions_ready(fresh, ["baseline"], 1) is None  # the image -> text panel keeps polling
    original = fresh.captions_status
    fresh.finish_caption_caches()
    status, item, thumb, table = search.fill_when_captions_ready(fresh, ["baseline"], 1)
    assert item == fresh.gallery[0].id and thumb and len(table) >= len(fresh.languages)  # drawn once they are ready
    assert search.fill_when_captions_ready(fresh, ["baseline"], 1, fresh.gallery[3].id)[1] == fresh.gallery[3].id  # the user's pick kept
    assert fresh.captions_ready.is_set() and not fresh.pending_captions and fresh.captions_status == "" and original
    for name in fresh.model_names():
        assert np.allclose(fresh.model(name).caption_emb, world.model(name).caption_emb, atol=1e-4)
    late = search.text_search(fresh, "de caption 5", "auto", ["baseline"], 3)
    assert late.methods[0].target_rank == early.methods[0].target_rank
    assert leaderboard.model_result(fresh, fresh.model("baseline"))["groups"]
    # A second start finds the test captions' states and the cached embeddings: nothing deferred.
    again = load_world(world_paths["bundle"], world_paths["checkpoints"], tmp_path / "ws", defer_captions=True)
    assert not again.pending_captions and again.captions_ready.is_set()
    assert all(m.captions is not None for m in again.model_list())


def test_shipped_audit_scores_open_the_audit_before_the_training_pairs(world, world_paths, tmp_path, monkeypatch):
    """assets/audit (ship_scores): the very scores the audit computes, used on a fresh workspace while the
    training pairs are still pending, and refused when the file, the checkpoint or the bundle differ."""
    from ccr_core.dashboard import audit
    from ccr_core.dashboard.world import load_world

    root = tmp_path / "assets-audit"
    written = audit.ship_scores(world, root)
    assert written and all(p.exists() for p in written)
    monkeypatch.setattr(audit, "SHIPPED_DIR", root)
    fresh = load_world(world_paths["bundle"], world_paths["checkpoints"], tmp_path / "ws", defer_captions=True)
    assert fresh.pending_training
    name = audit.uncertainty_models(fresh)[0]
    view = audit.audit(fresh, name)  # no InputError: the shipped scores stand in for the pending training pairs
    computed = audit.pair_uncertainty(world, world.model(name), use_shipped=False)
    assert view.scores.caption_ids == computed.caption_ids and view.scores.item_ids == computed.item_ids
    assert np.allclose(view.scores.scores, computed.scores, atol=1e-6) and np.allclose(view.scores.mismatch, computed.mismatch, atol=1e-6)
    assert set(view.scores.trivial) == set(computed.trivial)
    assert np.array_equal(view.scores.labels, computed.labels)  # labels come from the bundle's noise file, not the asset
    gallery, table, status = audit.uncertain_pairs(fresh, name, 0, 5)
    assert len(gallery) == 5 and "Pairs 1–5" in status
    # Refused: an altered file, another checkpoint, another bundle
    model = fresh.model(name)
    path = root / fresh.name / f"{audit.safe_name(name)}-{model.checkpoint_hash[:12]}.npz"
    original = path.read_bytes()
    path.write_bytes(original[:-10] + b"0123456789")
    assert audit.shipped_scores(fresh, model, root) is None
    path.write_bytes(original)
    assert audit.shipped_scores(fresh, model, root) is not None
    monkeypatch.setattr(model, "checkpoint_hash", "0" * 64)
    assert audit.shipped_scores(fresh, model, root) is None
    monkeypatch.undo()
    monkeypatch.setattr(audit, "bundle_stamp", lambda w: "another bundle")
    assert audit.shipped_scores(fresh, model, root) is None


def test_shipped_features_are_used_and_only_the_text_states_wait(world_paths, tmp_path):
    """The demo world ships its feature cache: a fresh workspace with it extracts no image again."""
    import shutil

    import ccr_core.features
    from ccr_core.dashboard.world import load_world

    shutil.copytree(world_paths["workspace"] / "features", tmp_path / "ws" / "features")
    calls = []
    real = ccr_core.features._encode_paths
    ccr_core.features._encode_paths = lambda *a: (calls.append(1), real(*a))[1]
    try:
        fresh = load_world(world_paths["bundle"], world_paths["checkpoints"], tmp_path / "ws")
    finally:
        ccr_core.features._encode_paths = real
    (config, bench), = fresh.benches.items()
    assert not calls and len(bench.features.ids) == len(fresh.bundle.items)  # the full, shipped cache
    assert config in fresh.pending_training  # the training captions' text states are still to come


# --------------------------------------------------------------------------------------------------
# search


def _direct_similarity(world, model, lang):
    """Similarity of a language's test captions to the gallery, straight from the library."""

    bench = world.benches[model.backbones]
    caps = [c for c in world.captions if c.lang == lang]
    sim = (model.trained.on(bench).encode_captions(caps, lang) @ model.trained.on(bench).encode_items(world.gallery).T).numpy()
    return caps, sim, np.array([world.gallery_pos[c.item] for c in caps])


def test_dataset_caption_ground_truth_rank_equals_the_similarity_matrix_rank(world):
    from ccr_core.dashboard import search
    from ccr_core import metrics

    for lang in ("de", "zh"):
        for model in world.model_list():
            caps, sim, c2i = _direct_similarity(world, model, lang)
            expected = metrics.text_to_image_ranks(sim, c2i)
            for row in (0, 4, 9):
                result = search.text_search(world, caps[row].text, "auto", [model.name], k=15, caption_id=caps[row].id)
                hits = result.methods[0]
                assert result.caption.id == caps[row].id and result.lang == lang
                assert hits.target_rank == expected[row]
                assert [h.rank for h in hits.hits] == list(range(1, 16))
                assert all(a.score >= b.score for a, b in zip(hits.hits, hits.hits[1:]))
                marked = [h for h in hits.hits if h.is_target]
                assert len(marked) == 1 and marked[0].rank == expected[row] and marked[0].item_id == caps[row].item



def test_a_result_column_finds_its_model_by_name_not_by_parsing_its_label(world):
    from ccr_core.dashboard import search
    from ccr_core.dashboard.colours import method_colour

    result = search.text_search(world, "ein rotes Quadrat", "de", ["baseline"], 2)
    hits = result.methods[0]
    assert hits.name == "baseline" and hits.model == world.model("baseline").label
    entry = world.model("baseline")
    colour = method_colour(entry.method, entry.noise)
    # a label that does not start with the name (a session's own model is "<name> (trained here)") still finds it
    relabelled = search.MethodHits("Baseline, as trained in this browser", hits.hits, name="baseline")
    assert f'color:{colour}' in search.slot_title(world, relabelled) and colour != "#000"


def test_free_text_goes_through_frozen_states_once_and_each_head(world):
    from ccr_core.dashboard import search
    from ccr_core.methods.base import TextBatch
    from ccr_core.training.text_cache import frozen_states

    text = "ein neuer Satz über ein Quadrat"
    result = search.text_search(world, text, "de", world.model_names(), k=3)
    assert result.caption is None and all(m.target_rank is None for m in result.methods)
    model = world.model("baseline")
    backbones = model.backbones
    states, mask = frozen_states(world.benches[backbones].text_encoder, [text], backbones.text_trainable_layers, backbones.text_prefix)
    with torch.no_grad():
        q = model.trained.method.encode_text(TextBatch(states, mask), "de").numpy()[0]
    scores = model.image_emb @ q
    top = [world.gallery[j].id for j in np.argsort(-scores, kind="stable")[:3]]
    assert [h.item_id for h in result.methods[0].hits] == top
    # Typing a test caption's exact text finds its ground truth without picking it.
    cap = next(c for c in world.captions if c.lang == "en")
    assert search.text_search(world, f"  {cap.text} ", "auto", ["baseline"], 5).caption.id == cap.id


def test_uml_reports_query_uncertainty_and_others_do_not(world):
    from ccr_core.dashboard import search

    result = search.text_search(world, "zh caption", "auto", world.model_names(), 5)
    for m in result.methods:
        if m.model == "uml":
            assert 0 < m.uncertainty <= 1 and "uncertainty" in m.title
        else:
            assert m.uncertainty is None
    table = result.summary_table()
    assert list(table["method"]) == world.model_names()


@pytest.mark.parametrize("query, kwargs, message", [
    ("", {}, "empty"), ("   \n\t", {}, "empty"), (None, {}, "empty"),
    ("a query", {"k": 0}, "between 1 and 50"), ("a query", {"k": 51}, "between 1 and 50"), ("a query", {"k": "many"}, "whole number"),
    ("a query", {"methods": []}, "at least one method"), ("a query", {"methods": ["nope"]}, "No model named"),
    ("a query", {"lang": "xx"}, "not one the text encoder knows"), ("a query", {"caption_id": "nope#1"}, "Unknown test caption"),
])
def test_search_bad_inputs_give_messages(world, query, kwargs, message):
    from ccr_core.dashboard import InputError, search

    args = {"lang": "auto", "methods": ["baseline"], "k": 5, **kwargs}
    with pytest.raises(InputError, match=message):
        search.text_search(world, query, args["lang"], args["methods"], args["k"], args.get("caption_id"))


def test_long_queries_are_cut_with_a_note(world):
    from ccr_core.dashboard import search

    huge = search.text_search(world, "x" * 100_000, "en", ["baseline"], 3)
    assert any("first 2,000 of 100,000 characters" in n for n in huge.notes) and len(huge.methods[0].hits) == 3
    long = search.text_search(world, "a long caption " * 20, "en", ["baseline"], 3)
    assert any("tokens" in n and "ignored" in n for n in long.notes)
    assert "Note" in long.status()


def test_image_to_text_for_a_gallery_image_and_an_upload(world, tmp_path):
    from ccr_core.dashboard import InputError, search

    item = world.gallery[3]
    result = search.image_to_text(world, item.id, None, ["baseline", "uml"], k=2)
    assert {h.lang for h in result.hits} == {"en", "de", "zh"} and len(result.hits) == 2 * 3 * 2
    model = world.model("baseline")
    for lang in ("en", "zh"):
        rows = [i for i, c in enumerate(world.captions) if c.lang == lang]
        scores = model.caption_emb[rows] @ model.image_emb[world.gallery_pos[item.id]]
        order = np.argsort(-scores, kind="stable")
        own = min(r + 1 for r, j in enumerate(order) if world.captions[rows[j]].item == item.id)
        assert result.own_ranks["baseline"][lang] == own
    # An upload of the same picture goes through the visual backbone and lands on the same embedding.
    upload = search.image_to_text(world, None, world.bundle.image_path(item), ["baseline"], k=2)
    same = [h.caption_id for h in result.hits if h.model == "baseline"]
    assert [h.caption_id for h in upload.hits] == same and upload.item_id is None
    bad = tmp_path / "not-an-image.png"
    bad.write_text("hello")
    with pytest.raises(InputError, match="Could not read"):
        search.image_to_text(world, None, bad, ["baseline"])
    with pytest.raises(InputError, match="not an image of the test gallery"):
        search.image_to_text(world, "img0", None, ["baseline"])  # a training image
    with pytest.raises(InputError, match="Pick a search result"):
        search.image_to_text(world, "", None, ["baseline"])


# --------------------------------------------------------------------------------------------------
# many languages


def test_many_languages_ranks_and_spread_for_an_instance(world):
    from ccr_core.dashboard import languages, search

    item = world.gallery[5].id
    texts = languages.instance_texts(world, item)
    assert set(texts) == {"en", "de", "zh"} and all(texts.values())
    result = languages.many_languages(world, texts, item, world.model_names())
    for spread in result.methods:
        model = world.model(spread.model)
        for lang, text in texts.items():
            row = world.caption_pos[next(c.id for c in world.captions if c.item == item and c.lang == lang)]
            assert spread.ranks[lang] == search.rank_of(model.image_emb @ model.caption_emb[row], world.gallery_pos[item])
        assert spread.spread == pytest.approx(np.std(list(spread.ranks.values())))
    assert len(result.table()) == len(world.model_names())
    fig = result.figure()
    assert len(fig.data) == 2 * len(world.model_names())


def test_many_languages_without_an_instance_targets_the_english_top1(world):
    from ccr_core.dashboard import InputError, languages

    result = languages.many_languages(world, {"en": "en caption 8", "de": "de caption 8", "zh": ""}, None, ["baseline"])
    only = result.methods[0]
    assert only.ranks["en"] == 1 and set(only.ranks) == {"en", "de"}
    result = languages.many_languages(world, {"de": "de caption 8"}, "", ["baseline"])
    assert result.methods[0].spread is None and any("two or more" in n for n in result.notes)
    with pytest.raises(InputError, match="at least one language"):
        languages.many_languages(world, {"en": " ", "de": ""}, None, ["baseline"])
    with pytest.raises(InputError, match="not a test image"):
        languages.many_languages(world, {"en": "x"}, "img0", ["baseline"])


def test_many_languages_takes_a_language_the_world_lacks(world):
    from ccr_core.dashboard import languages, search

    item = languages.default_instance(world)
    assert item == world.gallery[0].id  # every fixture image has en/de/zh captions
    texts = {**languages.instance_texts(world, item), "es": "un cuadrado de colores", "xx": "ignored"}
    result = languages.many_languages(world, texts, item, ["baseline"])
    assert list(result.texts) == ["en", "de", "zh", "es"] and any("'xx'" in n for n in result.notes)
    model = world.model("baseline")
    encoded, _ = world.encode_texts(["un cuadrado de colores"], "es", [model])
    assert result.methods[0].ranks["es"] == search.rank_of(model.image_emb @ encoded["baseline"][0], world.gallery_pos[item])
    assert "rank es" in result.table().columns


# --------------------------------------------------------------------------------------------------
# consistency


def test_mrv_table_matches_metrics_and_evaluation(world):
    from ccr_core.dashboard import consistency
    from ccr_core import metrics
    from ccr_core.eval.retrieval import evaluate_model

    table = consistency.mrv_summary(world)
    for _, row in table.iterrows():
        model = world.model(row["model"])
        ranks = consistency.rank_tables(world, model)
        assert row["MRV text→image"] == round(metrics.mrv(ranks["t2i"]), 3)
        expected = evaluate_model(model.trained, world.benches[model.backbones])["mrv"]
        assert row["MRV text→image"] == round(expected["mrv_t2i"], 3) and row["MRV image→text"] == round(expected["mrv_i2t"], 3)
    worst = consistency.inconsistent_instances(world, "baseline", "t2i", n=5)
    assert list(worst["σ"]) == sorted(worst["σ"], reverse=True) and len(worst) == 5
    assert len(consistency.spread_histogram(world, None, "i2t").data) == len(world.model_names())


def test_consistency_instance_detail(world):
    from ccr_core.dashboard import InputError, consistency

    item = consistency.instance_choices(world)[0][1]
    caps, fig, status = consistency.instance_detail(world, item, None, "t2i")
    assert set(caps["id"]) >= {f"{item}#en#0", f"{item}#de#0", f"{item}#zh#0"}
    heat = fig.data[0]
    assert np.asarray(heat.z).shape == (3, len(world.model_names())) and item in status
    t = consistency.rank_tables(world, world.model("baseline"))
    assert list(np.asarray(heat.z)[:, 0]) == list(t["t2i"][t["items"].index(item)])
    with pytest.raises(InputError):
        consistency.instance_detail(world, "nope", None, "t2i")
    with pytest.raises(InputError, match="Direction"):
        consistency.instance_detail(world, item, None, "sideways")


# --------------------------------------------------------------------------------------------------
# audit


def test_audit_scores_match_training_pair_uncertainty(world):
    from ccr_core.dashboard import InputError, audit
    from ccr_core import metrics
    from ccr_core.eval.detectors import training_pair_uncertainty

    if "uml" not in world.model_names():
        pytest.skip("uml is not available")
    view = audit.audit(world, "uml")
    reference = training_pair_uncertainty(world.model("uml").trained, world.model("uml").bench)
    assert view.scores.caption_ids == reference["caption_ids"]
    assert np.allclose(view.scores.scores, reference["scores"]) and list(view.scores.labels) == list(reference["labels"])
    assert f"{reference['auroc']:.3f}" in view.status and view.curves is not None
    # UML also has the mismatch score; the list and precision@k are ranked by it
    assert np.allclose(view.scores.mismatch[[k for k, c in enumerate(view.scores.caption_ids) if c in set(reference["caption_ids"])]],
                       reference["mismatch_scores"])
    # one ROC/PR pair per detector -- u, the DECL score and the two trivial ones -- plus the chance lines
    assert f"{reference['auroc_mismatch']:.3f}" in view.status and len(view.curves.data) == 4 * 2 + 2
    assert len(view.scores.trivial) == 2 and "Against the trivial detector" in view.status
    for name, values in view.scores.trivial.items():  # each trivial detector's AUROC is the one shown, on the same pairs
        mask = view.scores.labels >= 0
        assert f"{metrics.auroc(values[mask], view.scores.labels[mask]):.3f}" in " ".join(t.name for t in view.curves.data)
    at_10 = view.precision.set_index("k").loc[10, "precision@k (share noisy)"]
    assert at_10 == round(metrics.precision_at_k(reference["mismatch_scores"], reference["labels"], 10), 3)
    gallery, table, status = audit.uncertain_pairs(world, "uml", 0, 5)
    assert len(gallery) == len(table) == 5 and list(table["mismatch"]) == sorted(table["mismatch"], reverse=True)
    assert "highest DECL score" in status and "DECL=" in gallery[0][1]
    assert set(table["true label"]) <= {"clean", "noisy-correspondence"} and Path(gallery[0][0]).exists()
    with pytest.raises(InputError, match="Start"):
        audit.uncertain_pairs(world, "uml", 10_000, 5)
    # Each machine-translated caption stands beside the English caption it was translated from.
    text_of = {c.id: c for c in world.model("uml").bench.bundle.captions}
    for _, row in table.iterrows():
        assert row["English source"] == text_of[text_of[row["caption id"]].ref].text and text_of[text_of[row["caption id"]].ref].lang == "en"
    # Filters: one language, one noise kind; the page keeps the ranking order within them.
    _, zh_noisy, text = audit.uncertain_pairs(world, "uml", 0, 100, "zh", "noisy-correspondence")
    ps = view.scores
    expected = sum(1 for l, n in zip(ps.langs, ps.noise_names) if l == "zh" and n == "noisy-correspondence")
    assert len(zh_noisy) == expected and set(zh_noisy["language"]) == {"zh"} and set(zh_noisy["true label"]) == {"noisy-correspondence"}
    assert list(zh_noisy["mismatch"]) == sorted(zh_noisy["mismatch"], reverse=True) and "language zh" in text
    with pytest.raises(InputError, match="No training pair"):
        audit.uncertain_pairs(world, "uml", 0, 5, "en", "noisy-correspondence")
    # Detection rate per kind: of each kind, the share among the N pairs ranked first (N = the noisy pairs).
    kinds = audit.detection_by_kind(ps).set_index("noise kind")
    labelled = ps.labels >= 0
    n_noisy = int((ps.labels == 1).sum())
    top = set(np.argsort(-np.where(labelled, ps.ranking, -np.inf), kind="stable")[:n_noisy].tolist())
    found = sum(1 for j in top if ps.noise_names[j] == "noisy-correspondence")
    assert kinds.loc["noisy-correspondence", "flagged"] == found and kinds.loc["noisy-correspondence", "pairs"] == n_noisy
    assert kinds.loc["noisy-correspondence", "detection rate"] == f"{100 * found / n_noisy:.1f}%"
    assert kinds.loc["clean (false alarms)", "flagged"] == n_noisy - found
    assert audit.noise_kinds(world, "uml") == ["noisy-correspondence", "clean"]
    with pytest.raises(InputError, match="does not estimate"):
        audit.audit(world, "baseline")


# --------------------------------------------------------------------------------------------------
# projection


def test_projections_have_the_right_shape_and_are_cached(world, world_paths):
    from ccr_core.dashboard import InputError, projection
    from ccr_core.dashboard.world import load_world

    p = projection.project(world, "baseline", ["en", "zh"], "PCA", sample=10)
    assert p.coords.shape == (10 + 10 * 2, 2) and p.source == "computed"
    assert [pt["kind"] for pt in p.points].count("image") == 10
    assert projection.project(world, "baseline", ["en", "zh"], "PCA", sample=10).source == "memory"
    stamp = json.loads(next((world.cache_dir / "projections").glob("baseline-*.json")).read_text())
    assert stamp["checkpoint_sha256"] == world.model("baseline").checkpoint_hash
    fresh = load_world(world_paths["bundle"], world_paths["checkpoints"], world_paths["workspace"])
    again = projection.project(fresh, "baseline", ["en", "zh"], "PCA", sample=10)
    assert again.source == "disk" and np.array_equal(again.coords, p.coords)
    calls = []
    u = projection.project(world, "baseline", ["de"], "UMAP", sample=15, n_neighbors=5, min_dist=0.2, progress=lambda f, d: calls.append(f))
    assert u.coords.shape == (30, 2) and np.isfinite(u.coords).all() and calls[-1] == 1.0
    fig = projection.figure(u, lines=True)
    assert fig.data[0].mode == "lines" and len(fig.data) == 3
    with pytest.raises(InputError, match="n_neighbors"):
        projection.project(world, "baseline", ["de"], "UMAP", sample=15, n_neighbors=1)
    with pytest.raises(InputError, match="sample"):
        projection.project(world, "baseline", ["de"], "PCA", sample=10**6)
    # The tab opens on cached maps only: never computes one on the way.
    assert projection.project(world, "baseline", ["de"], "PCA", sample=20, cached_only=True) is None
    assert projection.project(world, "baseline", ["en", "zh"], "PCA", sample=10, cached_only=True).source == "memory"


def test_a_shared_projection_fits_both_models_at_once_and_selection_links_them(world):
    from ccr_core.dashboard import InputError, projection

    left, right = projection.project_shared(world, "baseline", "uml", ["en", "zh"], "PCA", sample=10)
    assert left.coords.shape == right.coords.shape == (30, 2) and left.points == right.points  # the same instances
    assert left.params["shared"] and left.source == "computed"
    assert projection.project_shared(world, "baseline", "uml", ["en", "zh"], "PCA", sample=10)[0].source == "memory"
    # One fit: the PCA of both models' points together (the same axes for both maps).
    xa, _ = projection._points(world, world.model("baseline"), ["en", "zh"], 10, 0)
    xb, _ = projection._points(world, world.model("uml"), ["en", "zh"], 10, 0)
    together = projection._fit(np.concatenate([xa, xb]), "PCA", 15, 0.1, 0)
    assert np.allclose(np.concatenate([left.coords, right.coords]), together, atol=1e-4)
    items = [pt["item"] for pt in left.points if pt["kind"] == "image"][:2]
    grid, table, status, chosen = projection.selection(world, " ".join(items), ["en", "zh"])
    assert chosen == items and len(grid) == 2 and set(table["image"]) == set(items) and set(table["language"]) == {"en", "zh"}
    fig = projection.figure(left, highlight=items, thumb_url=lambda item: f"thumbs/{item}.jpg")
    ring = fig.data[-1]
    assert ring.name == "selected" and len(ring.x) == 2 * 3  # each selected image and its two captions, ringed
    assert list(fig.data[0].customdata[0]) == [left.points[0]["item"], f"thumbs/{left.points[0]['item']}.jpg"]  # for hover thumbnails
    assert fig.layout.dragmode == "lasso"
    with pytest.raises(InputError, match="Select points"):
        projection.selection(world, "", ["en"])
    with pytest.raises(InputError, match="Not test images"):
        projection.selection(world, "nope", ["en"])


# --------------------------------------------------------------------------------------------------
# leaderboard


def test_leaderboard_matches_evaluation_and_is_cached(world, world_paths, monkeypatch):
    import pandas as pd

    from ccr_core.dashboard import leaderboard as leaderboard_module
    from ccr_core.eval.retrieval import evaluate_model
    from ccr_core.dashboard import InputError, leaderboard
    from ccr_core.dashboard.world import load_world

    df = leaderboard.leaderboard_table(world, "SumR")
    assert len(df) == len(world.model_names()) * 3 and list(df["SumR"]) == sorted(df["SumR"], reverse=True)
    row = df[(df["model"] == "baseline") & (df["group"] == "de")].iloc[0]
    model = world.model("baseline")
    expected = evaluate_model(model.trained, world.benches[model.backbones])
    assert row["SumR"] == round(expected["groups"]["de"]["SumR"], 2) and row["MRV t2i"] == round(expected["mrv"]["mrv_t2i"], 3)
    assert list(leaderboard.leaderboard_table(world, "MRV mean")["MRV mean"]) == sorted(df["MRV mean"])
    bars, mrv = leaderboard.leaderboard_figures(df, "t2i_R@1", world)
    assert len(bars.data) == len(world.model_names()) and len(mrv.data) == 2
    csv_path, json_path = leaderboard.export(world, df)
    assert len(pd.read_csv(csv_path)) == len(df) and json.loads(json_path.read_text())["world"] == "tiny"
    # A second start reads the cached, stamped results instead of evaluating again.
    monkeypatch.setattr(leaderboard_module, "evaluate_model", lambda *a, **k: pytest.fail("evaluated again"))
    fresh = load_world(world_paths["bundle"], world_paths["checkpoints"], world_paths["workspace"])
    assert leaderboard.leaderboard_table(fresh, "SumR").equals(df)
    with pytest.raises(InputError, match="Cannot sort"):
        leaderboard.leaderboard_table(world, "height")


def test_ranking_has_one_row_per_model_with_interval_and_verdict(world):
    from ccr_core.study import stats
    from ccr_core.dashboard import leaderboard

    def run(method, seed, sumr):
        return {"setting": "published", "method": method, "noise_rate": 0.0, "seed": seed,
                "groups": {"en": {"SumR": 500.0}, "de": {"SumR": sumr}}, "mrv": {"mrv_mean": 1.0}}

    # uml beats the baseline by 40 in every seed (resolved); one_to_k is +1, -1, +2 (its interval holds 0)
    results = [run("baseline", s, v) for s, v in enumerate((400.0, 410.0, 405.0))]
    results += [run("uml", s, v + 40) for s, v in enumerate((400.0, 410.0, 405.0))]
    results += [run("one_to_k", s, v + d) for s, (v, d) in enumerate(((400.0, 1), (410.0, -1), (405.0, 2)))]
    saved = world.memo.get("protocol_cells")
    world.memo["protocol_cells"] = stats.cells(results)
    try:
        table = leaderboard.ranking_table(world)
    finally:
        world.memo.pop("protocol_cells")
        if saved is not None:
            world.memo["protocol_cells"] = saved
    grid_mean = {"baseline": 405.0, "uml": 445.0, "one_to_k": 405.0 + 2 / 3}
    assert list(table["model"]) == sorted(grid_mean, key=lambda m: -grid_mean[m])  # by the interval's mean: uml, one_to_k, baseline
    assert set(table["ranked by"]) == {"interval mean"}
    assert sorted(table["model"]) == sorted(world.model_names()) and list(table["rank"]) == list(range(1, len(table) + 1))
    row = table.set_index("model")
    mean, hw = stats.t_interval([440.0, 450.0, 445.0])
    assert row.loc["uml", "target SumR over seeds (95% CI)"] == f"{mean:.1f} ± {hw:.1f} (3 seeds, published)"
    assert row.loc["uml", "verdict"] == "better than the baseline" and row.loc["uml", "vs baseline (paired, 95% CI)"].startswith("+40.0")
    assert row.loc["one_to_k", "verdict"].startswith("difference not resolved")
    assert row.loc["baseline", "verdict"] == "the reference"
    own = leaderboard.model_result(world, world.model("uml"))
    assert row.loc["uml", "target SumR"] == round(stats.target_sumr(own), 1)  # the checkpoint's own number


def test_ranking_follows_the_interval_not_one_checkpoint_and_names_identical_settings(world):
    """The checkpoint with the lower own score gets the better grid: the rank follows the grid. A model the grid
    has no seeds of comes after those it has ("own score"). Floor and baseline runs equal in every seed are named."""
    from ccr_core.study import stats
    from ccr_core.dashboard import leaderboard

    own = {m: stats.target_sumr(leaderboard.model_result(world, world.model(m))) for m in ("uml", "one_to_k")}
    low, high = sorted(own, key=own.get)

    def run(method, seed, sumr):
        return {"setting": "common", "method": method, "noise_rate": 0.0, "seed": seed,
                "groups": {"en": {"SumR": 500.0}, "de": {"SumR": sumr}}, "mrv": {"mrv_mean": 1.0}}

    results = [run(low, s, 450.0 + s) for s in range(3)]  # `high` has no cell
    results += [run(m, s, v) for m in ("floor", "baseline") for s, v in enumerate((400.0, 401.0, 402.0))]
    saved = world.memo.get("protocol_cells")
    world.memo["protocol_cells"] = stats.cells(results)
    try:
        table = leaderboard.ranking_table(world)
        note = leaderboard.settings_note(world)
        same = leaderboard.identical_cells(world)
        results[-1]["groups"]["de"]["SumR"] = 403.0  # one baseline seed differs: no longer identical
        world.memo["protocol_cells"] = stats.cells(results)
        differing = leaderboard.identical_cells(world)
    finally:
        world.memo.pop("protocol_cells")
        if saved is not None:
            world.memo["protocol_cells"] = saved
    assert list(table["model"]) == [low, "baseline", high]
    assert list(table["ranked by"]) == ["interval mean", "interval mean", "own score"]
    assert "**published**" in note and "**common**" in note and "floor = baseline in the common setting" in note
    assert same == [0.0] and differing == []


def test_every_method_family_keeps_one_colour_blind_safe_hue():
    from ccr_core.dashboard import colours

    assert colours.family("one_to_k-noise0.4") == "one_to_k" and colours.family("uml-ft") == "uml" and colours.family("floor (trained here)") == "floor"
    assert colours.method_colour("baseline") != colours.method_colour("one_to_k", 0.4)  # a family and another family's variant never share a colour
    assert len({colours.method_colour(m) for m in colours.FAMILY_COLOURS}) == len(colours.FAMILY_COLOURS)
    assert set(colours.FAMILY_COLOURS.values()) <= set(colours.OKABE_ITO.values())
    light = colours.method_colour("uml", 0.4)
    r, g, b = (int(light[i : i + 2], 16) for i in (1, 3, 5))
    base = colours.FAMILY_COLOURS["uml"]
    assert (r, g, b) > tuple(int(base[i : i + 2], 16) for i in (1, 3, 5))  # the variant: the same hue, lighter


# --------------------------------------------------------------------------------------------------
# experiment and about


def _wait(job, seconds=120):
    import time

    deadline = time.time() + seconds
    while job.active and time.time() < deadline:
        time.sleep(0.2)
    return job


def test_experiment_runs_are_private_until_published_and_stopped_runs_are_discarded(world_paths):
    from ccr_core.dashboard import InputError, experiment, leaderboard, search
    from ccr_core.dashboard.world import load_world

    own = load_world(world_paths["bundle"], world_paths["checkpoints"], world_paths["workspace"])  # not the shared one
    shipped = own.model_names()
    jobs = experiment.experiments(own)
    with pytest.raises(InputError, match="Unknown method"):
        jobs.start("magic", 0.0, 10, owner="alice")
    with pytest.raises(InputError, match="Steps"):
        jobs.start("baseline", 0.0, 10**6, owner="alice")
    assert "Expected run time" in jobs.plan("baseline", 0.0, 6, "alice")  # from the shipped checkpoint's recorded time
    job = jobs.start("baseline", 0.2, 6, owner="alice")
    with pytest.raises(InputError, match="already going"):
        jobs.start("baseline", 0.0, 6, owner="bob")
    with pytest.raises(InputError, match="No such training run"):
        jobs.get(job.id, "bob")  # another session cannot see, stop or publish it
    _wait(job)
    assert job.status == "done", job.message
    assert [s for s, _ in job.losses] == list(range(1, 7)) and all(np.isfinite(l) for _, l in job.losses)
    name = job.model_name
    # Private: only alice's session lists it; every other view (and every other user) does not.
    assert own.model_names() == shipped and name in own.model_names("alice") and name not in own.model_names("bob")
    with pytest.raises(InputError, match="No model named"):
        own.model(name, "bob")
    assert name not in {m.split(" (")[0] for m in leaderboard.leaderboard_table(own)["model"]}
    assert "private to this browser session" in job.status_markdown()
    with pytest.raises(InputError, match="No such training run"):
        jobs.publish(job.id, "bob")
    jobs.publish(job.id, "alice")
    assert name in own.model_names() and name in own.model_names("bob") and not own.model(name).shipped and own.model(name).noise == 0.2
    assert own.model(name).bench.bundle.noise  # it saw injected noise
    assert search.text_search(own, "de caption 5", "auto", [name], 3).methods[0].target_rank is not None
    assert name + " (trained here)" in set(leaderboard.leaderboard_table(own)["model"])
    assert "published" in job.status_markdown() and "6 / 6" in job.progress_html() and len(job.loss_figure().data) == 2
    plan = jobs.plan("uml", 0.4, 50, "alice")
    # The plan (drawn once per settings change) never carries a run's state, which would go stale in it.
    assert "`uml` for **50 steps**" in plan and "40%" in plan and "Last run" not in plan and "Finished" not in plan
    assert "earlier run(s) of baseline" in jobs.plan("baseline", 0.0, 50, "bob")  # the expected time learns from finished runs
    # The estimate's parts are the finished run's own: steps at their measured rate, plus its set-up and finishing.
    spent = (job.first_step_at - job.started) + (job.finished - job.last_step_at)
    rate = (job.last_step_at - job.first_step_at) / (job.step - 1)
    expected, how = jobs.expected_seconds("baseline", 0.0, 6)
    assert expected == pytest.approx(6 * rate + spent) and "set-up and finishing of 1 earlier run" in how
    assert expected == pytest.approx(job.finished - job.started, rel=0.5, abs=0.5)  # the same settings: about as long
    # A stopped run is discarded (no model, no files) unless kept; until it has stopped it says "Stopping…".
    stopped = jobs.start("baseline", 0.0, 2000, owner="alice")
    jobs.stop(stopped.id, "alice")
    assert stopped.status_markdown().startswith("**Stopping…**") or not stopped.active
    assert _wait(stopped).status == "stopped" and stopped.step < 2000 and not stopped.model_name
    assert not stopped.run_dir.exists() and len(own.model_list(include_private=True)) == len(shipped) + 1
    kept = jobs.start("baseline", 0.0, 2000, owner="alice")
    jobs.stop(kept.id, "alice", keep=True)
    assert _wait(kept).status == "stopped" and kept.model_name in own.model_names("alice") and kept.model_name not in own.model_names()
    jobs.discard(kept.id, "alice")
    assert kept.model_name == "" and not kept.run_dir.exists() and kept.status == "discarded"


def test_about_has_methods_citations_and_the_dataset_card(world):
    from ccr_core.dashboard import about

    text = about.about_markdown(world)
    for needle in ("ACM Multimedia 2022", "AAAI 2024", "Science China Information Sciences 2025", "KDD 2024", "MRV", "Licence", "tiny", "$$"):
        assert needle in text
    # Plain words and the glossary come before the first formula; -ft is explained only where the world has such models.
    assert text.index("In plain words") < text.index("Words used here") < text.index("$")
    assert "-noise0.4" in text and "UML uncertainty" in text and "floor:" in text and "-ft" not in text


def test_start_here_lesson_steps_show_real_results(world):
    from ccr_core.dashboard import consistency, leaderboard, lesson
    from ccr_core import metrics

    two = lesson.step_two_languages(world)
    assert len(two.gallery) == 8 and all(Path(p).exists() for p, _ in two.gallery)
    assert list(two.table["language"]) == ["English", "German"]
    # The described picture is in both rows (first where it is outside the top 4), framed, with its real rank.
    assert len(two.targets) == 2 and all("✓ the described picture" in two.gallery[i][1] for i in two.targets)
    for row, target in zip(two.table.itertuples(), two.targets):
        assert f"#{row[3]} ·" in two.gallery[target][1]
        assert target % lesson.LESSON_K == (0 if row[3] > lesson.LESSON_K else row[3] - 1)
    noisy = lesson.step_noisy_translation(world)
    assert len(noisy.gallery) == 1 and noisy.targets == [0]
    assert noisy.table.iloc[2]["text"] == lesson.noise_words("noisy-correspondence") and ":" not in noisy.text.split("wrong one")[-1]
    spread = lesson.step_rank_spread(world)
    t = consistency.rank_tables(world, world.model("baseline"))
    mrv = leaderboard.model_result(world, world.model("baseline"))["mrv"]["mrv_mean"]
    assert f"MRV = {mrv:.2f}" in spread.text and "MRV mean" in spread.text and "standard deviation" in spread.text
    assert mrv == pytest.approx((metrics.mrv(t["t2i"]) + metrics.mrv(t["i2t"])) / 2, abs=1e-6)  # the Leaderboard's figure is this one
    assert spread.text.count("MRV = ") == 1 and len(spread.table) == len(world.languages)
    flags = lesson.step_uml_flags(world)
    assert len(flags.gallery) == 2 and flags.table.iloc[0]["mismatch"] >= flags.table.iloc[1]["mismatch"]
    standings = lesson.step_standings(world)
    assert set(standings.table["model"]) == {"baseline", "uml", "one_to_k"} and "not resolved" in standings.text
    assert "Search" in lesson.step_try_it(world).text
    for _, step in lesson.STEPS:
        shown = step(world)
        assert "$" not in shown.text  # plain words first: no step shows a formula
        assert "mt:" not in shown.text + shown.table.to_string() + "".join(c for _, c in shown.gallery)  # no label codes
        page = shown.figures_html()
        assert page.count("<img ") == len(shown.gallery) and page.count("ccr-lesson-target") == len(shown.targets)


def test_lesson_curation_picks_instances_where_each_point_shows(world):
    """Step 1 prefers an image both languages find in the top 4 at different places; step 3 a picture one language
    finds in its top 3 and the others do not; step 2 the labelled mistake easiest to see, named in words."""
    from ccr_core.dashboard import consistency, lesson

    model = world.model("one_to_k") if "one_to_k" in world.model_names() else world.model_list()[0]
    item, caps, ranks = lesson.pick_two_language_instance(world, model, ("en", "de"))
    everything = []
    for other_item, other_caps in lesson._native_pairs(world, ("en", "de")):
        r = [lesson.search.text_search(world, other_caps[l].text, l, [model.name], 1, other_caps[l].id).methods[0].target_rank for l in ("en", "de")]
        everything.append(r)
    best_possible = any(a != b and max(a, b) <= lesson.LESSON_K for a, b in everything)
    assert (ranks["en"] != ranks["de"] and max(ranks.values()) <= lesson.LESSON_K) == best_possible
    table = consistency.rank_tables(world, world.model("baseline"))
    j = lesson.pick_spread_instance(world, table)
    found = table["t2i"].min(axis=1) <= 3
    if found.any():
        assert found[j] and table["t2i"][j].std() == max(table["t2i"][i].std() for i in np.flatnonzero(found))
    assert lesson.noise_words("mt:word-order") == "the words are in the wrong order" and lesson.noise_words("mt:new-kind") == "new kind"


def test_warm_umap_cache_fills_numba_cache_once(tmp_path):
    """Set-up fills numba's cache (in a fresh process: functions pick their cache folder when defined)."""
    import os
    import subprocess
    import sys

    code = ("import json; from ccr_core.dashboard.projection import warm_umap_cache; "
            "print(json.dumps([warm_umap_cache(points=300, dim=8), warm_umap_cache(points=300, dim=8)]))")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["CCR_CACHE_DIR"] = str(tmp_path / "cache")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    first, second = json.loads(proc.stdout.strip().splitlines()[-1])
    assert first > 0 and second is None  # the second call sees the marker and does nothing
    cached = list((tmp_path / "cache" / "numba").rglob("*.nbi"))
    assert cached, "numba wrote no cache index files"
    assert (tmp_path / "cache" / "numba" / "ccr-umap-warm-300x8").exists()


def test_the_shipped_audit_scores_belong_to_the_shipped_checkpoints():
    """assets/audit/demo-world is regenerated whenever a demo-world UML or baseline is reshipped
    (`python -m ccr_core.dashboard.audit --ship`); a stale asset would be silently unused."""
    from ccr_core.dashboard.world import checkpoint_hash
    from ccr_core.io import read_json, sha256_file
    from ccr_core.paths import ASSETS_DIR, CHECKPOINTS_DIR

    folder = ASSETS_DIR / "audit" / "demo-world"
    manifest = read_json(folder / "manifest.json")
    assert set(manifest["models"]) == {p.name for p in (CHECKPOINTS_DIR / "demo-world").iterdir() if p.name.startswith("uml")}
    for name, entry in manifest["models"].items():
        assert entry["checkpoint_sha256"] == checkpoint_hash(CHECKPOINTS_DIR / "demo-world" / name)
        baseline = name.replace("uml", "baseline", 1)
        assert entry["trivial_checkpoint_sha256"] == checkpoint_hash(CHECKPOINTS_DIR / "demo-world" / baseline)
        assert sha256_file(folder / entry["file"]) == entry["sha256"]


def test_a_checkpoint_of_an_unknown_method_is_skipped_with_a_plugin_hint(world_paths, tmp_path, caplog):
    """A plugin method's checkpoint without its plugin loaded: the other models open, the page header says which
    checkpoint was left out and how to load its plugin (CCR_PLUGINS or --plugin); with none usable, a clear error."""
    import logging
    import shutil

    from ccr_core.dashboard.world import WorldNotBuilt, load_world
    from test_app_api import load_app_module

    ckpts = tmp_path / "ckpts"
    shutil.copytree(world_paths["checkpoints"] / "baseline", ckpts / "baseline")
    shutil.copytree(world_paths["checkpoints"] / "baseline", ckpts / "mine")
    config = json.loads((ckpts / "mine" / "config.json").read_text())
    (ckpts / "mine" / "config.json").write_text(json.dumps({**config, "method": "smallloss"}))
    with caplog.at_level(logging.WARNING, logger="ccr.app"):
        own = load_world(world_paths["bundle"], ckpts, world_paths["workspace"])
    assert own.model_names() == ["baseline"] and len(own.skipped) == 1
    why = own.skipped[0]
    assert "'mine'" in why and "'smallloss'" in why and "CCR_PLUGINS=" in why and "--plugin" in why
    assert why in caplog.text
    header = load_app_module().header_markdown(own)
    assert "**1 models**" in header and why in header
    shutil.rmtree(ckpts / "baseline")
    with pytest.raises(WorldNotBuilt, match="smallloss"):
        load_world(world_paths["bundle"], ckpts, world_paths["workspace"])


def test_score_gaps_tell_saturated_scores_apart():
    from ccr_core.dashboard.search import score_gap

    assert score_gap(-0.004) == "−0.004" and score_gap(-0.00031) == "−0.00031" and score_gap(0.0) == "±0"
    assert score_gap(-0.0000012) == "−0.000001" and score_gap(-0.25) == "−0.250"


def test_the_finder_says_when_no_test_caption_has_a_noise_label(world):
    """The fixture world labels training translations only (as the demo world does): the noise filter offers any/none
    and says why there is nothing else; a label on a test caption becomes a choice."""
    from ccr_core.dashboard import finder

    choices = finder.noise_choices(world)
    assert [v for _, v in choices] == [finder.ANY, finder.NONE_LABEL]
    assert "no test caption" in finder.noise_note(choices) and "Audit" in finder.noise_note(choices)
    test_caption = next(c for c in world.bundle.captions if c.split == "test")
    world.bundle.noise[test_caption.id] = "mt:word-order"
    try:
        choices = finder.noise_choices(world)
        assert ("mt:word-order", "mt:word-order") in choices and "no test caption" not in finder.noise_note(choices)
    finally:
        del world.bundle.noise[test_caption.id]


def test_two_searches_framing_the_same_picture_at_once_both_get_it(world, monkeypatch):
    """The framed ground-truth tile is made on first use; searches that frame the same picture at the same moment each
    get the finished file (one shared temporary name made the second fail with FileNotFoundError)."""
    import threading

    from PIL import Image

    from ccr_core.dashboard import thumbnails

    item = world.gallery[3].id
    thumb = world.thumbnail(item)
    framed = thumb.with_name(thumb.stem + "-truth.jpg")
    framed.unlink(missing_ok=True)
    barrier, results, errors = threading.Barrier(8), [], []
    real_save = Image.Image.save

    def slow_save(self, *args, **kwargs):  # every thread is past the "already made?" check before any file exists
        import time

        time.sleep(0.3)
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", slow_save)

    def frame():
        barrier.wait()
        try:
            results.append(thumbnails.marked_thumbnail(thumb))
        except Exception as exc:  # noqa: BLE001 -- collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=frame) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and set(results) == {framed}
    with Image.open(framed) as image:
        assert image.size[0] > Image.open(thumb).size[0]  # the frame is drawn around it
    assert not list(framed.parent.glob("*.tmp.jpg"))  # no temporary file left behind
