"""Error analysis without Gradio (issue 30): the instance view, the instance finder's filters and CSV,
maps coloured by a field, and the shareable URL state, on the dashboard fixture world."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from test_dashboard_logic import world, world_paths  # noqa: F401  (fixtures)


def test_instance_view_of_a_test_image_matches_search_and_the_consistency_tables(world):
    from ccr_core.dashboard import consistency, instance, search

    item = world.gallery[4].id
    view = instance.instance_view(world, item, ["baseline", "uml"])
    assert view.in_gallery and len(view.cells) == 2 * len(world.languages)
    for cell in view.cells:
        # the rank is the one Search gives for the same caption (whole gallery, the library's tie rule)
        found = search.text_search(world, cell.caption.text, cell.lang, [cell.model], 5, cell.caption.id).methods[0]
        assert cell.rank == found.target_rank and [i for i, _ in cell.top] == [h.item_id for h in found.hits]
        assert cell.score == pytest.approx(world.model(cell.model).caption_emb[world.caption_pos[cell.caption.id]]
                                           @ world.model(cell.model).image_emb[world.gallery_pos[item]], abs=1e-5)
        assert (cell.uncertainty is not None) == (cell.model == "uml")
        if cell.uncertainty is not None:
            assert cell.uncertainty == pytest.approx(found.uncertainty, abs=1e-5)
        own = search.image_to_text(world, item, None, [cell.model], 1).own_ranks[cell.model][cell.lang]
        assert cell.i2t_rank == own
    # every test image has a caption in every language here, so MRV's instance-restricted ranks are the whole gallery's
    table = consistency.rank_tables(world, world.model("baseline"))
    row = table["items"].index(item)
    assert [c.rank for c in view.cells if c.model == "baseline"] == [int(r) for r in table["t2i"][row]]
    html = instance.ranks_html(world, view, lambda i: f"thumb/{i}")
    assert html.count('class="ccr-inst-tile"') == 5 * len(view.cells) and "thumb/" in html


def test_instance_view_of_an_audited_training_pair_ranks_it_among_the_test_images(world):
    from ccr_core.dashboard import instance

    noisy = next(c for c in world.bundle.captions if world.bundle.noise.get(c.id) == "noisy-correspondence")
    view = instance.instance_view(world, noisy.item, ["baseline"], focus=noisy.id)
    assert not view.in_gallery and view.gallery_size == len(world.gallery) + 1
    assert {c.caption.id for c in view.cells} >= {noisy.id}  # the audited caption stands for its language
    assert all(1 <= c.rank <= view.gallery_size for c in view.cells)
    caps = view.captions
    row = caps[caps["caption id"] == noisy.id].iloc[0]
    source = next(c for c in world.bundle.captions if c.id == noisy.ref)
    assert row["noise label"] == "noisy-correspondence" and row["translated from"] == source.text
    with pytest.raises(instance.InputError, match="not an item"):
        instance.instance_view(world, "no-such-item")


def test_item_of_a_shown_picture(world):
    from ccr_core.dashboard import instance

    item = world.gallery[2].id
    assert instance.item_of_picture(world, {"image": {"path": f"/tmp/gradio/abc/{world.thumbnail(item).name}"}}) == item
    assert instance.item_of_picture(world, str(world.truth_thumbnail(item))) == item
    with pytest.raises(instance.InputError):
        instance.item_of_picture(world, "/tmp/elsewhere.png")


def _independent_ranks(world, name):
    """(item, lang) -> rank, computed here from the raw embeddings with a plain count (ties by gallery index)."""
    from ccr_core.dashboard import instance

    m = world.model(name)
    out = {}
    for it in world.gallery:
        for lang, cap in instance.query_captions(world, it.id, world.languages).items():
            s = m.image_emb @ m.caption_emb[world.caption_pos[cap.id]]
            t = world.gallery_pos[it.id]
            out[(it.id, lang)] = int((s > s[t]).sum() + (s[:t] == s[t]).sum() + 1)
    return out


def test_finder_filters_keep_exactly_the_rows_they_name(world, tmp_path):
    from ccr_core.dashboard import finder

    base = _independent_ranks(world, "baseline")
    uml = _independent_ranks(world, "uml")
    table = finder.instance_table(world, ["baseline", "uml"])
    assert len(table) == len(base) and all(table["rank baseline"][i] == base[(r.image, r.language)] for i, r in enumerate(table.itertuples()))

    rows, _ = finder.find(world, ["baseline"], finder.Filters(lang="de", model="baseline", rank_above=3, sort="rank baseline"))
    expected = sorted((k for k, r in base.items() if k[1] == "de" and r > 3), key=lambda k: -base[k])
    assert list(rows["rank baseline"]) == sorted((base[k] for k in expected), reverse=True)  # sorted, worst first
    assert set(zip(rows["image"], rows["language"])) == set(expected)

    f = finder.Filters(model_a="uml", a=2, model_b="baseline", b=1)
    rows = finder.apply_filters(world, table, f)
    assert set(zip(rows["image"], rows["language"])) == {k for k in base if uml[k] <= 2 and base[k] > 1}

    sigma = table["σ baseline"]
    cut = float(np.nanmedian(sigma))
    rows = finder.apply_filters(world, table, finder.Filters(model="baseline", min_sigma=cut))
    assert len(rows) == int((sigma >= cut).sum()) and (rows["σ baseline"] >= cut).all()

    u = next(c for c in table.columns if c.startswith("UML u"))
    rows = finder.apply_filters(world, table, finder.Filters(min_uncertainty=float(table[u].median()), sort=u, descending=False))
    assert len(rows) == int((table[u] >= table[u].median()).sum()) and list(rows[u]) == sorted(rows[u])

    word = world.captions[world.captions_of_item[world.gallery[5].id][0]].text
    rows = finder.apply_filters(world, table, finder.Filters(text=word))
    assert set(rows["image"]) == {it.id for it in world.gallery if any(word.casefold() in world.captions[i].text.casefold()
                                                                         for i in world.captions_of_item[it.id])}
    assert len(finder.apply_filters(world, table, finder.Filters(noise="noisy-correspondence"))) == 0  # test captions carry no noise label
    assert len(finder.apply_filters(world, table, finder.Filters(noise=finder.NONE_LABEL))) == len(table)
    with pytest.raises(finder.InputError, match="whole number"):
        finder.apply_filters(world, table, finder.Filters(model="baseline", rank_above=-2))
    with pytest.raises(finder.InputError, match="Choose the model"):
        finder.apply_filters(world, table, finder.Filters(rank_above=3))

    f = finder.Filters(model="baseline", rank_above=2)
    rows, _ = finder.find(world, None, f)
    path = finder.export_csv(world, rows, f)
    back = pd.read_csv(path)
    assert path.parent == world.export_dir and list(back["image"]) == list(rows["image"]) and (back["rank baseline"] > 2).all()


def test_maps_colour_by_a_models_rank_and_languages_never_share_a_colour(world):
    from ccr_core.dashboard import projection

    p = projection.project(world, "baseline", world.languages, "PCA", 15, 5, 0.1)
    ranks = projection.point_values(world, p, "rank", "uml")
    independent = _independent_ranks(world, "uml")
    for pt, value in zip(p.points, ranks):
        if pt["kind"] == "caption":
            assert value == independent[(pt["item"], pt["lang"])]
        else:
            assert value == min(independent[(pt["item"], l)] for l in world.languages)
    fig = projection.figure(p, False, [world.gallery[0].id], None, ranks, "rank", "rank by uml")
    assert any(getattr(t.marker, "showscale", False) for t in fig.data)
    correct = projection.point_values(world, p, "correct", "uml", 3)
    assert {v for v in correct} <= {"correct@3", "missed (rank > 3)"}
    assert len(set(projection.language_colours(30))) == 30
    assert projection.colour_field("rank:uml") == ("rank", "uml")
    with pytest.raises(projection.InputError):
        projection.colour_field("shoe size")


def test_url_state_round_trips_and_drops_what_the_page_cannot_show():
    from ccr_core.dashboard.urlstate import parse_state, state_query

    tabs, langs, models = ["search", "instance", "finder"], ["auto", "en", "de", "zh"], ["baseline", "uml"]
    query = state_query("search", "ein Hund & eine Katze?", "de", ["uml", "baseline"], "img3")
    assert query.startswith("?tab=search&q=ein+Hund+%26+eine+Katze%3F&lang=de&models=uml%2Cbaseline&instance=img3")
    from urllib.parse import parse_qsl

    state = parse_state(dict(parse_qsl(query[1:])), tabs, langs, models, {"img3"})
    assert (state.tab, state.q, state.lang, state.models, state.instance, state.notes) == ("search", "ein Hund & eine Katze?", "de",
                                                                                          ["uml", "baseline"], "img3", [])
    bad = parse_state({"tab": "nope", "lang": "xx", "models": "uml,ghost", "instance": "img99", "q": "x" * 5000}, tabs, langs, models, {"img3"})
    assert (bad.tab, bad.lang, bad.models, bad.instance, len(bad.q)) == ("", "", ["uml"], "", 2000)
    assert len(bad.notes) == 4
    assert state_query() == "" and parse_state({}, tabs, langs, models).tab == ""
