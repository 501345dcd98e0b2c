"""Flickr8k-ML: the Flickr8k photos with English, Chinese (human, human-translated and two real MT
systems), German, French and Czech captions, assembled into one bundle from the upstream files.

Sources, read exactly as upstream publishes them (see ``fetch_flickr8k_ml``)::

    SOURCE/flickr8k/images/<name>.jpg                      Flickr8k photos
    SOURCE/flickr8kcn/data/flickr8k{enc,zhc,zhb,zhg}.caption.txt, flickr8kzhmtest.captions.txt
    SOURCE/flickr8kcn/data/flickr8k{train,val,test}.txt    the standard 6,000 / 1,000 / 1,000 split
    SOURCE/multi30k/data/task1/...                         de / fr / cs human translations (1 per image)
    SOURCE/multi30k/data/task2/...                         de independent captions (5 per image)

Choices (all recorded in the manifest's ``extra``):

* Items are the photos named in the standard Flickr8k splits, keyed by the file name without ``.jpg``.
  The 91 mirrored photos in none of the three split files are left out (with their captions), so the
  splits stay the standard ones that published Flickr8k / Flickr8k-CN numbers use.
* A caption takes the Flickr8k split of its image, whatever its source's own split (Multi30K's
  train/val/test_2016 differ from Flickr8k's).
* Chinese MT (Baidu, Google) is kept for train and val: train for translate-train learning, val so a
  model can be selected without human target-language captions, as the setting demands. Test MT is
  left out so that evaluation cannot pick MT up by mistake; test has human and human-translated Chinese.
* Multi30K's English lines are not used: the Flickr8k English (5 per image) is the English. They
  serve only to link each de/fr/cs translation to its English source: ``ref`` is the Flickr8k English
  caption equal to the Multi30K English line up to case, spacing and punctuation (about 97% of lines;
  the rest have no ``ref``).
* Chinese MT and human translation ``#n`` translate English caption ``#n`` of the same photo: their
  ``ref`` is that caption's id.
* Multi30K is joined through the Flickr30k id, the numeric prefix of a Flickr8k name.
* Captions in upstream files whose image is not in the photo folder (Flickr8k's token file lists
  ``2258277193_586949ec62.jpg.1``, which is no photo) are skipped and counted.
"""
from __future__ import annotations

import os
import re
import shutil
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections import Counter
from pathlib import Path
from typing import Iterable

from ccr_core.data import formats
from ccr_core.data.bundle import SPLITS, Bundle, Caption, Item, Manifest, load_bundle, save_bundle
from ccr_core.io import atomic_path
from ccr_core.paths import cache_dir, shared_data_dir

NAME = "flickr8k-ml"
LANGUAGES = ["en", "zh", "de", "fr", "cs"]
IMAGES_DIR = "flickr8k/images"
FLICKR8KCN_DIR = "flickr8kcn/data"
MULTI30K_DIR = "multi30k/data"

SPLIT_FILES = {split: f"{FLICKR8KCN_DIR}/flickr8k{split}.txt" for split in SPLITS}
# Flickr8k-CN caption file -> (expected tag, splits whose captions are kept)
FLICKR8KCN_SETS = {
    "flickr8kenc.caption.txt": ("enc", SPLITS),
    "flickr8kzhc.caption.txt": ("zhc", SPLITS),
    "flickr8kzhmtest.captions.txt": ("zhm", SPLITS),  # only has test images
    "flickr8kzhb.caption.txt": ("zhb", ("train", "val")),
    "flickr8kzhg.caption.txt": ("zhg", ("train", "val")),
}
MULTI30K_TASK1 = {"splits": ("train", "val", "test_2016_flickr"), "langs": ("de", "fr", "cs"), "source": "human-translation"}
MULTI30K_TASK2 = {"splits": ("train", "val", "test_2016"), "numbers": (1, 2, 3, 4, 5), "langs": ("de",), "source": "human"}

LICENCE = (
    "Photos: Flickr images under the Flickr Terms of Use, research and non-commercial use only. "
    "Captions: research data; cite Flickr8k (Hodosh et al., JAIR 2013), Flickr8k-CN (Li et al., ICMR 2016) "
    "and Multi30K (Elliott et al., 2016)."
)
DESCRIPTION = (
    "Flickr8k (standard 6,000/1,000/1,000 split) with English captions (5 per image, human), Chinese "
    "written by native speakers (5 per image), the human Chinese translation of the test English, and "
    "two real MT systems' Chinese (Baidu, Google; train and val only): a real MT-noise setting. German, "
    "French and Czech come from Multi30K for the 7,478 photos that are also in Flickr30k: task-1 human "
    "translations of one English caption (source human-translation) and, for German, 5 independent "
    "captions from task 2 (source human). There is no real MT for de/fr/cs: their human translations "
    "serve as a clean stand-in for MT in translate-train experiments, which makes those settings easier "
    "than real MT. Photos are not copied: image_root is the photo folder given to the builder."
)

UPSTREAM_BRANCH = "master"
MULTI30K_URL = f"https://raw.githubusercontent.com/multi30k/dataset/{UPSTREAM_BRANCH}/data/"
FLICKR8KCN_URL = f"https://raw.githubusercontent.com/li-xirong/flickr8kcn/{UPSTREAM_BRANCH}/data/"
PHOTOS_URL = "https://github.com/jbrownlee/Datasets/releases/download/Flickr8k/Flickr8k_Dataset.zip"
PHOTOS_ZIP_FOLDER = "Flicker8k_Dataset/"  # sic: the original distribution's spelling


def _log(progress: bool, message: str) -> None:
    if progress:
        print(f"[flickr8k-ml] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------------
# Layout


def multi30k_files() -> list[str]:
    """The Multi30K files the build reads, relative to the source folder."""
    paths = []
    for split in MULTI30K_TASK1["splits"]:
        paths.append(f"{MULTI30K_DIR}/task1/image_splits/{split}.txt")
        paths += [f"{MULTI30K_DIR}/task1/raw/{split}.{lang}.gz" for lang in ("en", *MULTI30K_TASK1["langs"])]
    for split in MULTI30K_TASK2["splits"]:
        paths.append(f"{MULTI30K_DIR}/task2/image_splits/{split}_images.txt")
        paths += [f"{MULTI30K_DIR}/task2/raw/{split}.{n}.{lang}.gz" for n in MULTI30K_TASK2["numbers"] for lang in MULTI30K_TASK2["langs"]]
    return paths


def required_files() -> list[str]:
    """Every caption and split file the build reads, relative to the source folder (photos aside)."""
    return list(SPLIT_FILES.values()) + [f"{FLICKR8KCN_DIR}/{name}" for name in FLICKR8KCN_SETS] + multi30k_files()


def verify_layout(source_dir: str | os.PathLike) -> None:
    """Raise ``FileNotFoundError`` listing what is missing from a Flickr8k-ML source folder."""
    root = Path(source_dir)
    missing = [rel for rel in required_files() if not (root / rel).is_file()]
    images = root / IMAGES_DIR
    if not images.is_dir():
        missing.insert(0, IMAGES_DIR + "/")
    else:
        for split, rel in SPLIT_FILES.items():
            if (root / rel).is_file():
                missing += [f"{IMAGES_DIR}/{i}.jpg ({split} split)" for i in formats.read_flickr8k_split(root / rel) if not (images / f"{i}.jpg").is_file()]
    if missing:
        shown = "\n  ".join(missing[:20]) + (f"\n  ... and {len(missing) - 20} more" if len(missing) > 20 else "")
        raise FileNotFoundError(
            f"{root}: not a complete Flickr8k-ML source folder; missing:\n  {shown}\n"
            "Get the files with ccr_core.data.flickr8k_ml.fetch_flickr8k_ml(DEST)."
        )


# --------------------------------------------------------------------------------------------------
# Build


def _normalise(text: str) -> str:
    """English text up to case, spacing and punctuation (Flickr8k is tokenised, Multi30K is not)."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split())


def flickr8k_ml_records(source_dir: str | os.PathLike | None = None, progress: bool = False) -> tuple[list[Item], list[Caption], dict]:
    """Items, captions and a report (counts and what was skipped and why) from the upstream files."""
    root = Path(source_dir) if source_dir is not None else shared_data_dir()
    verify_layout(root)
    assembly = _Assembly(root, progress)
    assembly.read_flickr8kcn()
    assembly.join_multi30k()
    return assembly.items, assembly.captions, assembly.report()


class _Assembly:
    """The bundle's records as they are read: the photos and their standard split, the captions so far (ids unique),
    and what was skipped, per file, with why."""

    def __init__(self, root: Path, progress: bool):
        self.root, self.progress = root, progress
        self.photos = {name[:-4] for name in os.listdir(root / IMAGES_DIR) if name.endswith(".jpg")}
        self.split_of: dict[str, str] = {}
        for split, rel in SPLIT_FILES.items():
            for image_id in formats.read_flickr8k_split(root / rel):
                if self.split_of.setdefault(image_id, split) != split:
                    raise formats.FormatError(f"{root / rel}: image {image_id} is also in the {self.split_of[image_id]} split")
        split_of = self.split_of
        self.items = [Item(i, f"{i}.jpg", split_of[i]) for i in sorted(split_of, key=lambda i: (SPLITS.index(split_of[i]), i))]
        self.captions: list[Caption] = []
        self.seen_ids: set[str] = set()
        self.not_in_mirror: dict[str, Counter] = {}  # file -> image -> captions skipped
        self.skipped_unsplit: Counter = Counter()  # file -> captions of photos in no standard split
        self.skipped_by_policy: Counter = Counter()  # file -> MT captions outside train/val
        self.ambiguous: list[str] = []  # Flickr30k ids that more than one Flickr8k photo starts with
        self.joined: Counter = Counter()  # Multi30K split -> Flickr8k photos joined
        self.not_in_flickr8k: Counter = Counter()  # Multi30K split -> image lines with no Flickr8k photo
        self.translation_refs: Counter = Counter()

    def add(self, item: str, lang: str, source: str, n: int, text: str, where: str, ref: str = "") -> None:
        cap_id = formats.make_caption_id(item, lang, source, n)
        if cap_id in self.seen_ids:
            raise formats.FormatError(f"{where}: a second caption with id {cap_id!r}")
        self.seen_ids.add(cap_id)
        self.captions.append(Caption(cap_id, item, lang, text, source, self.split_of[item], ref if ref in self.seen_ids else ""))

    def read_flickr8kcn(self) -> None:
        """Flickr8k's English and Flickr8k-CN's Chinese (human and machine-translated), by the standard split."""
        for name, (tag, keep_splits) in FLICKR8KCN_SETS.items():
            path = self.root / FLICKR8KCN_DIR / name
            _log(self.progress, f"reading {path}")
            lang, source = formats.FLICKR8KCN_TAGS[tag]
            for rec in formats.read_flickr8kcn_captions(path):
                if rec.tag != tag:
                    raise formats.FormatError(f"{path}:{rec.line}: tag {rec.tag!r} where this file has {tag!r}")
                image = rec.image_id
                if image not in self.photos:
                    self.not_in_mirror.setdefault(name, Counter())[rec.image] += 1
                elif image not in self.split_of:
                    self.skipped_unsplit[name] += 1
                elif self.split_of[image] not in keep_splits:
                    self.skipped_by_policy[name] += 1
                else:
                    # zhb/zhg/zhm #n translate enc #n; zhc and enc are written from the photo, no ref
                    ref = formats.make_caption_id(image, "en", "human", rec.n) if source != "human" else ""
                    self.add(image, lang, source, rec.n, rec.text, f"{path}:{rec.line}", ref)

    def join_multi30k(self) -> None:
        """Multi30K's German, French and Czech of the Flickr8k photos among its Flickr30k images: a Flickr30k file name
        "<id>.jpg" is the Flickr8k photo whose name starts "<id>_"; task 1 translations link to the English they
        translate when its text is one of the photo's Flickr8k English captions."""
        by_prefix: dict[str, list[str]] = {}
        for photo in self.photos:
            by_prefix.setdefault(photo.split("_", 1)[0] + ".jpg", []).append(photo)
        self.ambiguous = sorted(k for k, v in by_prefix.items() if len(v) > 1)
        self.flickr30k_to_8k = {k: v[0] for k, v in by_prefix.items() if len(v) == 1}
        self.english_of: dict[tuple[str, str], str] = {}  # (item, normalised English text) -> Flickr8k English caption id
        for cap in self.captions:
            if cap.lang == "en":
                self.english_of.setdefault((cap.item, _normalise(cap.text)), cap.id)
        folder = self.root / MULTI30K_DIR
        for split in MULTI30K_TASK1["splits"]:
            image_list = formats.multi30k_image_list_path(folder, 1, split)
            images = formats.read_image_list(image_list)
            self.joined[split] = sum(name in self.flickr30k_to_8k for name in images)
            self.not_in_flickr8k[split] = len(images) - self.joined[split]
            _log(self.progress, f"joining Multi30K task 1 {split}: {self.joined[split]} of {len(images)} images are Flickr8k photos")
            english = formats.read_parallel(image_list, formats.multi30k_caption_path(folder, 1, split, "en"), "en", images=images)
            for lang in MULTI30K_TASK1["langs"]:
                self._join(1, split, images, lang, MULTI30K_TASK1["source"], None, english)
        for split in MULTI30K_TASK2["splits"]:
            _log(self.progress, f"joining Multi30K task 2 {split}")
            images = formats.read_image_list(formats.multi30k_image_list_path(folder, 2, split))
            for n in MULTI30K_TASK2["numbers"]:
                for lang in MULTI30K_TASK2["langs"]:
                    self._join(2, split, images, lang, MULTI30K_TASK2["source"], n)

    def _join(self, task: int, split: str, images: list[str], lang: str, source: str, n: int | None, english: list | None = None) -> None:
        image_list = formats.multi30k_image_list_path(self.root / MULTI30K_DIR, task, split)
        caption_file = formats.multi30k_caption_path(self.root / MULTI30K_DIR, task, split, lang, n)
        name = caption_file.relative_to(self.root).as_posix()
        for rec in formats.read_parallel(image_list, caption_file, lang, n, images=images):
            image = self.flickr30k_to_8k.get(rec.image)
            if image is None:
                continue
            if image not in self.split_of:
                self.skipped_unsplit[name] += 1
                continue
            ref = ""
            if english is not None:
                ref = self.english_of.get((image, _normalise(english[rec.index].text)), "")
                self.translation_refs["linked" if ref else "unlinked"] += 1
            self.add(image, lang, source, 0 if n is None else n - 1, rec.text, f"{caption_file}:{rec.index + 1}", ref)

    def report(self) -> dict:
        """Counts and what was skipped, and why."""
        return {
            "counts": counts_to_json(item_counts(self.items), caption_counts(self.captions)),
            "photos_in_folder": len(self.photos),
            "skipped": {
                "images_not_in_photo_folder": {
                    "why": "listed in a caption file but no such photo (Flickr8k's token file lists one that is not in the dataset)",
                    "images": sorted({image for per_file in self.not_in_mirror.values() for image in per_file}),
                    "captions_per_file": {name: sum(c.values()) for name, c in sorted(self.not_in_mirror.items())},
                },
                "photos_in_no_standard_split": {
                    "why": "not in flickr8k{train,val,test}.txt; left out to keep the standard split",
                    "images": sorted(self.photos - set(self.split_of)),
                    "captions_per_file": dict(sorted(self.skipped_unsplit.items())),
                },
                "mt_outside_train_val": {
                    "why": "MT Chinese is kept for train and val only",
                    "captions_per_file": dict(sorted(self.skipped_by_policy.items())),
                },
                "multi30k_english": "not used as captions: the Flickr8k English captions are the English",
                "ambiguous_flickr30k_ids": self.ambiguous,
            },
            "multi30k_images_joined": dict(self.joined),  # by Multi30K's own split
            "multi30k_images_not_in_flickr8k": dict(self.not_in_flickr8k),
            "multi30k_translations_linked_to_flickr8k_english": dict(self.translation_refs),
            "mt_splits": ["train", "val"],
        }


def build_flickr8k_ml(
    source_dir: str | os.PathLike | None = None, out_dir: str | os.PathLike | None = None, progress: bool = True
) -> Path:
    """Assemble the Flickr8k-ML bundle and return its folder.

    Args:
        source_dir: a folder laid out like the mirror (default :func:`shared_data_dir`); get one
            with :func:`fetch_flickr8k_ml`.
        out_dir: where to write the bundle (default ``<cache_dir>/bundles/flickr8k-ml``).
        progress: print what it is doing to stderr.
    """
    started = time.perf_counter()
    root = Path(source_dir) if source_dir is not None else shared_data_dir()
    out = Path(out_dir) if out_dir is not None else cache_dir() / "bundles" / NAME
    items, captions, report = flickr8k_ml_records(root, progress)
    manifest = Manifest(
        name=NAME,
        licence=LICENCE,
        description=DESCRIPTION,
        languages=list(LANGUAGES),
        image_root=str((root / IMAGES_DIR).absolute()),
        extra=report,
    )
    save_bundle(out, manifest, items, captions)
    _log(progress, f"wrote {len(items)} items and {len(captions)} captions to {out} in {time.perf_counter() - started:.1f} s")
    return out


# --------------------------------------------------------------------------------------------------
# Counts


def item_counts(items: Iterable[Item]) -> dict[str, int]:
    counts = Counter(it.split for it in items)
    return {split: counts[split] for split in SPLITS}


def caption_counts(captions: Iterable[Caption]) -> dict[tuple[str, str, str], int]:
    """Exact caption counts keyed by (split, lang, source), in split, language, source order."""
    counts = Counter((c.split, c.lang, c.source) for c in captions)
    order = {lang: i for i, lang in enumerate(LANGUAGES)}
    return dict(sorted(counts.items(), key=lambda kv: (SPLITS.index(kv[0][0]), order.get(kv[0][1], 99), kv[0][1], kv[0][2])))


def counts_to_json(items: dict[str, int], captions: dict[tuple[str, str, str], int]) -> dict:
    return {"items": items, "captions": {"/".join(key): n for key, n in captions.items()}}


def flickr8k_ml_counts(bundle: Bundle | str | os.PathLike) -> dict:
    """``{"items": {split: n}, "captions": {(split, lang, source): n}}`` of a built bundle."""
    if not isinstance(bundle, Bundle):
        bundle = load_bundle(bundle, check_images=False, check_hashes=False)
    return {"items": item_counts(bundle.items), "captions": caption_counts(bundle.captions)}


def format_counts(counts: dict) -> str:
    """A plain-text table: one row per (language, source), one column per split, and totals.

    >>> print(format_counts({"items": {"train": 2, "val": 0, "test": 1},
    ...                      "captions": {("train", "en", "human"): 10, ("test", "en", "human"): 5}}))
    lang  source                  train      val     test    total
    items                             2        0        1        3
    en    human                      10        0        5       15
    """
    rows: dict[tuple[str, str], Counter] = {}
    for (split, lang, source), n in counts["captions"].items():
        rows.setdefault((lang, source), Counter())[split] += n
    order = {lang: i for i, lang in enumerate(LANGUAGES)}
    lines = [f"{'lang':<5} {'source':<20} " + " ".join(f"{s:>8}" for s in SPLITS) + f" {'total':>8}"]
    items = counts["items"]
    lines.append(f"{'items':<26} " + " ".join(f"{items.get(s, 0):>8}" for s in SPLITS) + f" {sum(items.values()):>8}")
    for (lang, source), per_split in sorted(rows.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0])):
        lines.append(f"{lang:<5} {source:<20} " + " ".join(f"{per_split[s]:>8}" for s in SPLITS) + f" {sum(per_split.values()):>8}")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Fetch


def _download(url: str, target: Path, progress: bool) -> None:
    _log(progress, f"downloading {url}")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_path(target) as tmp:
            with open(tmp, "wb") as handle:
                shutil.copyfileobj(response, handle, 1 << 20)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConnectionError(
            f"could not download {url} ({reason}). If this machine is offline, copy the files from a "
            "local mirror instead: fetch_flickr8k_ml(DEST, source=MIRROR_DIR)."
        ) from None


def _extract_photos(zip_path: Path, images_dir: Path, progress: bool) -> int:
    """Extract ``Flicker8k_Dataset/*.jpg`` flat into ``images_dir`` (nothing else, no other paths)."""
    images_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    with zipfile.ZipFile(zip_path) as archive:
        for member in archive.infolist():
            name = member.filename
            if member.is_dir() or not name.startswith(PHOTOS_ZIP_FOLDER) or not name.lower().endswith(".jpg"):
                continue
            base = name[len(PHOTOS_ZIP_FOLDER):]
            if "/" in base or base.startswith("."):
                continue
            with archive.open(member) as src, atomic_path(images_dir / base) as tmp:
                tmp.write_bytes(src.read())
            count += 1
    _log(progress, f"extracted {count} photos into {images_dir}")
    return count


def fetch_flickr8k_ml(
    dest_dir: str | os.PathLike, source: str | os.PathLike | None = None, progress: bool = True, link_images: bool = True
) -> Path:
    """Get the Flickr8k-ML source files into ``dest_dir``, laid out like the mirror, and verify them.

    Without ``source`` the files come from upstream over the network (Multi30K and Flickr8k-CN from
    GitHub, the photos from the ``Flickr8k_Dataset.zip`` release asset of ``jbrownlee/Datasets``);
    files already present are kept. With ``source=DIR`` they are copied from a local mirror (the photo
    folder is symlinked unless ``link_images=False``) and nothing touches the network.
    """
    dest = Path(dest_dir)
    dest.mkdir(parents=True, exist_ok=True)
    if source is not None:
        src = Path(source)
        verify_layout(src)
        for rel in required_files():
            target = dest / rel
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src / rel, target)
        images = dest / IMAGES_DIR
        if not images.exists():
            images.parent.mkdir(parents=True, exist_ok=True)
            if link_images:
                images.symlink_to((src / IMAGES_DIR).absolute(), target_is_directory=True)
            else:
                shutil.copytree(src / IMAGES_DIR, images)
        _log(progress, f"copied the Flickr8k-ML source files from {src} to {dest}")
    else:
        for name in [*SPLIT_FILES.values(), *(f"{FLICKR8KCN_DIR}/{n}" for n in FLICKR8KCN_SETS)]:
            if not (dest / name).is_file():
                _download(FLICKR8KCN_URL + name.removeprefix(FLICKR8KCN_DIR + "/"), dest / name, progress)
        for name in multi30k_files():
            if not (dest / name).is_file():
                _download(MULTI30K_URL + name.removeprefix(MULTI30K_DIR + "/"), dest / name, progress)
        images = dest / IMAGES_DIR
        if not images.is_dir() or not any(images.glob("*.jpg")):
            zip_path = dest / "flickr8k" / "Flickr8k_Dataset.zip"
            if not zip_path.is_file():
                _download(PHOTOS_URL, zip_path, progress)
            _extract_photos(zip_path, images, progress)
            zip_path.unlink()
    verify_layout(dest)
    return dest
