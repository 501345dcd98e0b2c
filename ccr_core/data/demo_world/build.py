"""Build the demo world: a fully offline, procedurally generated multilingual image/video-caption bundle.

Everything derives from one seed, so the same seed gives bit-identical files. Caption ids::

    <item>#<lang>#<k>          native caption k ("generated"): English in every split, the other
                               languages in val and test (they stand in for human test captions)
    <item>#<lang>#mt<k>        simulated MT of English caption k into <lang> ("mt:sim"; train, val)
    <item>#<lang>#mt<k>#bt     its back-translation into English ("back-translation:sim", lang "en")

Beside the bundle files, ``scenes.jsonl`` holds the drawn objects of every item and ``mt.jsonl`` the
provenance of every MT caption (source caption, back-translation, error label and detail, donor).
"""
from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ccr_core.data.bundle import MANIFEST_FILE, Caption, Item, Manifest, save_bundle
from ccr_core.io import atomic_path, read_json, sha256_file

from .grammar import LANGUAGES, TARGET_LANGUAGES, Entity, Message, realise, templates_for
from .mt import NOISY_CORRESPONDENCE, SYSTEM, translate
from .render import render_to
from .scene import Scene, sample_image_scene, sample_video_scene

NAME = "demo-world"
GENERATOR_VERSION = "1"
MEDIA_DIR = "media"
SCENES_FILE, MT_FILE = "scenes.jsonl", "mt.jsonl"
MT_SOURCE, BT_SOURCE, NATIVE_SOURCE = f"mt:{SYSTEM}", f"back-translation:{SYSTEM}", "generated"


@dataclass(frozen=True)
class DemoWorldConfig:
    seed: int = 0  # every random choice derives from it (and from nothing else)
    n_train: int = 5000  # still pictures per split
    n_val: int = 500
    n_test: int = 1000
    n_video: tuple[int, int, int] = (300, 50, 100)  # clips in train, val, test
    captions_per_image: int = 2  # per language: English everywhere, every language in val/test
    mt_error_rate: float = 0.2  # share of MT captions given one labelled translation error
    noisy_correspondence_rate: float = 0.0  # share of training MT captions swapped for another item's
    image_size: int = 128  # pixels; objects are drawn big for a 224-pixel feature extractor
    video_size: int = 96
    video_frames: int = 8
    size_mention_rate: float = 0.6  # how often a caption states an object's size


@dataclass(frozen=True)
class _Planned:
    item: Item
    scene: Scene


def _plan(config: DemoWorldConfig) -> list[_Planned]:
    planned = []
    counts = {"train": config.n_train, "val": config.n_val, "test": config.n_test}
    for split, n in counts.items():
        for i in range(n):
            scene = sample_image_scene(random.Random(f"{NAME}/{config.seed}/image/{split}/{i}"), config.image_size)
            item_id = f"img{len(planned):05d}"
            planned.append(_Planned(Item(item_id, f"images/{item_id}.png", split, "image"), scene))
    n_images = len(planned)
    for split, n in zip(counts, config.n_video):
        for i in range(n):
            rng = random.Random(f"{NAME}/{config.seed}/video/{split}/{i}")
            scene = sample_video_scene(rng, config.video_size, config.video_frames)
            item_id = f"vid{len(planned) - n_images:04d}"
            planned.append(_Planned(Item(item_id, f"videos/{item_id}", split, "video"), scene))
    return planned


def scene_message(scene: Scene, template: str, rng: random.Random, size_mention_rate: float = 0.6) -> Message:
    """A caption's view of a scene: every entity's shape and colour, its size only sometimes."""

    def entity(obj, count):
        says_size = rng.random() < size_mention_rate and scene.motion not in ("grow", "shrink")
        return Entity(obj.shape, obj.colour, obj.size if says_size else None, count)

    second = scene.second
    return Message(
        layout="pair" if scene.layout == "group_pair" else scene.layout,
        template=template,
        subject=entity(scene.first, scene.count),
        other=entity(second, 1) if second is not None else None,
        relation=scene.relation,
        region=scene.region,
        motion=scene.motion,
        background=scene.background,
        variant=rng.randrange(1 << 16),
    )


def caption_messages(scene: Scene, n: int, rng: random.Random, size_mention_rate: float = 0.6) -> list[Message]:
    """``n`` messages in different templates (templates repeat only when n exceeds their number)."""
    names = list(templates_for(scene.layout, scene.relation))
    rng.shuffle(names)
    return [scene_message(scene, names[k % len(names)], rng, size_mention_rate) for k in range(n)]


def _captions_for(planned: _Planned, config: DemoWorldConfig):
    """Captions of one item, and the MT provenance records of its MT captions."""
    item, scene, split = planned.item, planned.scene, planned.item.split
    seed = config.seed
    english = caption_messages(scene, config.captions_per_image, random.Random(f"{NAME}/{seed}/{item.id}/en"), config.size_mention_rate)
    captions = [Caption(f"{item.id}#en#{k}", item.id, "en", realise("en", m), NATIVE_SOURCE, split) for k, m in enumerate(english)]
    if split != "train":
        for lang in TARGET_LANGUAGES:
            rng = random.Random(f"{NAME}/{seed}/{item.id}/{lang}")
            for k, m in enumerate(caption_messages(scene, config.captions_per_image, rng, config.size_mention_rate)):
                captions.append(Caption(f"{item.id}#{lang}#{k}", item.id, lang, realise(lang, m), NATIVE_SOURCE, split))
    records = []
    if split != "test":
        for lang in TARGET_LANGUAGES:
            for k, m in enumerate(english):
                mt_id = f"{item.id}#{lang}#mt{k}"
                out = translate(m, lang, config.mt_error_rate, random.Random(f"{NAME}/{seed}/mt/{mt_id}"))
                # ref: the caption each one translates, so training aligns source, MT and back-translation.
                captions.append(Caption(mt_id, item.id, lang, out.text, MT_SOURCE, split, f"{item.id}#en#{k}"))
                captions.append(Caption(f"{mt_id}#bt", item.id, "en", out.back_translation, BT_SOURCE, split, mt_id))
                records.append({
                    "caption": mt_id, "item": item.id, "lang": lang, "split": split, "source_caption": f"{item.id}#en#{k}",
                    "back_translation": f"{mt_id}#bt", "label": out.label, "detail": out.detail, "donor_caption": None,
                })
    return captions, records


def _swap_correspondence(planned: list[_Planned], captions: list[Caption], records: list[dict], config: DemoWorldConfig) -> None:
    """Noisy correspondence: replace a share of training MT captions (and their back-translations)
    by the MT caption of another training item of the same kind; donors are read before any swap."""
    if config.noisy_correspondence_rate <= 0:
        return
    position = {c.id: i for i, c in enumerate(captions)}
    original = {c.id: c.text for c in captions}
    pools = {kind: [p.item.id for p in planned if p.item.split == "train" and p.item.kind == kind] for kind in ("image", "video")}
    kind_of = {p.item.id: p.item.kind for p in planned}
    for record in records:
        if record["split"] != "train":
            continue
        rng = random.Random(f"{NAME}/{config.seed}/noisy/{record['caption']}")
        pool = pools[kind_of[record["item"]]]
        if rng.random() >= config.noisy_correspondence_rate or len(pool) < 2:
            continue
        donor = pool[rng.randrange(len(pool) - 1)]
        if donor == record["item"]:
            donor = pool[-1]  # draw from the pool without this item
        donor_caption = f"{donor}#{record['lang']}#mt{record['caption'].rsplit('#mt', 1)[1]}"
        for own, theirs in ((record["caption"], donor_caption), (record["back_translation"], donor_caption + "#bt")):
            index = position[own]
            # The text moves; id and ref stay, so the item is paired with another item's caption.
            captions[index] = Caption(own, captions[index].item, captions[index].lang, original[theirs], captions[index].source, "train", captions[index].ref)
        record.update(label=NOISY_CORRESPONDENCE, detail=f"caption of {donor}", donor_caption=donor_caption)


def _write_jsonl(path: Path, records) -> str:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return sha256_file(path)


BUILD_MARKER = ".ccr-demo-world-build"  # marks a folder as a (possibly interrupted) demo-world build


def _prepare_media(root: Path) -> Path:
    media = root / MEDIA_DIR
    if media.exists():
        manifest = root / MANIFEST_FILE
        ours = (root / BUILD_MARKER).exists() or (manifest.exists() and read_json(manifest).get("name") == NAME)
        if not ours:
            raise FileExistsError(f"{media} exists and {root} is not a demo world; refusing to overwrite it")
        shutil.rmtree(media)  # a rebuild must not leave pictures of a larger earlier build behind
    root.mkdir(parents=True, exist_ok=True)
    (root / BUILD_MARKER).touch()  # so a rebuild after a kill may replace this half-written folder
    media.mkdir(parents=True)
    return media


def _render_all(tasks: list[tuple[Scene, str]], workers: int, progress: bool) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(tasks), desc="demo-world: drawing", unit="item", disable=not progress)
    if workers <= 1:
        for task in tasks:
            render_to(task)
            bar.update()
    else:
        with multiprocessing.get_context("fork" if os.name == "posix" else "spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(render_to, tasks, chunksize=64):
                bar.update()
    bar.close()


def build_demo_world(
    out_dir: str | os.PathLike,
    seed: int = 0,
    n_train: int = 5000,
    n_val: int = 500,
    n_test: int = 1000,
    n_video: tuple[int, int, int] = (300, 50, 100),
    captions_per_image: int = 2,
    mt_error_rate: float = 0.2,
    noisy_correspondence_rate: float = 0.0,
    progress: bool = True,
    workers: int | None = None,
    **options,
) -> Path:
    """Generate the demo world into ``out_dir`` and return it.

    Args:
        out_dir: bundle folder (created; a previous demo world there is replaced).
        seed: the only source of randomness.
        n_train, n_val, n_test: still pictures per split; n_video: clips per split.
        captions_per_image: captions per item and language.
        mt_error_rate: share of MT captions (train and val) with one labelled error.
        noisy_correspondence_rate: share of training MT captions replaced by another item's.
        progress: show tqdm bars.
        workers: drawing processes (default: up to 2 for large worlds, 1 for small ones).
        options: other :class:`DemoWorldConfig` fields (image_size, video_size, video_frames, ...).

    Example:
        >>> import tempfile
        >>> from ccr_core.data.bundle import load_bundle
        >>> root = build_demo_world(tempfile.mkdtemp() + "/demo", n_train=20, n_val=5, n_test=5, n_video=(2, 1, 1), progress=False)
        >>> load_bundle(root).stats()[("test", "ja", "generated")]
        12
    """
    config = DemoWorldConfig(
        seed=seed, n_train=n_train, n_val=n_val, n_test=n_test, n_video=tuple(n_video), captions_per_image=captions_per_image,
        mt_error_rate=mt_error_rate, noisy_correspondence_rate=noisy_correspondence_rate, **options,
    )
    from tqdm import tqdm

    started = time.perf_counter()
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    media = _prepare_media(root)
    planned = _plan(config)

    captions: list[Caption] = []
    records: list[dict] = []
    for p in tqdm(planned, desc="demo-world: captions", unit="item", disable=not progress):
        item_captions, item_records = _captions_for(p, config)
        captions.extend(item_captions)
        records.extend(item_records)
    _swap_correspondence(planned, captions, records, config)
    noise = {r["caption"]: r["label"] for r in records if r["split"] == "train"}

    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(planned) >= 1000 else 1
    _render_all([(p.scene, str(media / p.item.image)) for p in planned], workers, progress)

    extra_files = {
        SCENES_FILE: _write_jsonl(root / SCENES_FILE, ({"item": p.item.id, "split": p.item.split, "kind": p.item.kind, **p.scene.to_json()} for p in planned)),
        MT_FILE: _write_jsonl(root / MT_FILE, records),
    }
    config_json = asdict(config)
    config_json["n_video"] = list(config.n_video)
    manifest = Manifest(
        name=NAME,
        version=GENERATOR_VERSION,
        licence="CC0-1.0 (generated by CCR Lab)",
        description=(
            "Procedurally drawn shapes (pictures and short clips) with captions in six languages realised from "
            "the scene structure. Training: English captions, simulated machine translations into de, fr, cs, zh, "
            "ja with labelled errors, and their back-translations. Validation: native captions in every language "
            "plus MT. Test: native captions in every language (standing in for human captions)."
        ),
        languages=list(LANGUAGES),
        image_root=MEDIA_DIR,
        extra={
            "generator": "ccr_core.data.demo_world",
            "generator_version": GENERATOR_VERSION,
            "config": config_json,
            "caption_ids": "<item>#<lang>#<k> native; <item>#<lang>#mt<k> MT of <item>#en#<k>; <mt id>#bt its back-translation",
            "scenes_file": SCENES_FILE,
            "mt_file": MT_FILE,
            "extra_files": extra_files,  # sha256 of the files beside the bundle
        },
    )
    save_bundle(root, manifest, [p.item for p in planned], captions, noise)
    if progress:
        print(f"demo-world: {len(planned)} items, {len(captions)} captions in {time.perf_counter() - started:.1f} s -> {root}")
    return root
