"""The one dataset format of CCR Lab (a "bundle"): a folder with a manifest, items and captions.

Layout::

    BUNDLE/
      manifest.json    name, version, licence, description, languages, image_root, sha256 of each file
      items.jsonl      {"id", "image", "split", "kind"}          one line per image or video
      captions.jsonl   {"id", "item", "lang", "text", "source", "split"}
      noise.jsonl      {"caption", "label"}                       optional, training captions only

``image`` is a path relative to ``image_root`` (itself relative to the bundle folder, or absolute,
so a bundle can point at photos it must not copy). ``kind`` is ``image`` or ``video``; a video's
``image`` is a ``T x D`` ``.npy`` of frame features or a folder of frames. ``source`` says what a
caption is: ``human``, ``human-translation``, ``mt:<system>``, ``back-translation:<system>`` or
``generated``. An optional ``ref`` names the caption a translation or back-translation was made
from, so methods can align source, machine translation and back-translation. A noise label is ``clean`` or the kind of corruption (``noisy-correspondence``,
``mt:wrong-sense`` ...).

Loading validates everything and raises :class:`BundleError` naming the file and line.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from ccr_core.io import atomic_path, read_json, sha256_file, write_json_atomic
from ccr_core.paths import bundle_dir

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
ITEM_KINDS = ("image", "video")
SOURCE_PATTERN = re.compile(r"^(human|human-translation|generated|mt:[\w.\-]+|back-translation:[\w.\-]+)$")
# ISO 639-1 codes (plus a few common region/script variants) accepted as caption languages.
LANGUAGE_CODES = frozenset(
    """af am ar as az be bg bn br bs ca cs cy da de el en eo es et eu fa fi fr fy ga gd gl gu ha he hi
    hr hu hy id is it ja jv ka kk km kn ko ku ky la lo lt lv mg mk ml mn mr ms my ne nl no om or pa pl
    ps pt ro ru sa sd si sk sl so sq sr su sv sw ta te th tl tr ug uk ur uz vi xh yi zh zu
    zh-cn zh-tw pt-br""".split()
)
LANGUAGE_NAMES = {
    "en": "English", "de": "German", "fr": "French", "cs": "Czech", "zh": "Chinese", "ja": "Japanese",
    "es": "Spanish", "it": "Italian", "ru": "Russian", "ar": "Arabic", "ko": "Korean", "id": "Indonesian",
    "tr": "Turkish", "sw": "Swahili", "pt": "Portuguese", "nl": "Dutch", "pl": "Polish",
}
ITEMS_FILE, CAPTIONS_FILE, NOISE_FILE, MANIFEST_FILE = "items.jsonl", "captions.jsonl", "noise.jsonl", "manifest.json"


class BundleError(ValueError):
    """A bundle file is malformed; the message names the file and, where it applies, the line."""


class BundleExistsError(FileExistsError):
    """The output folder is taken (a bundle, or other files) and replacing it was not asked for."""


@dataclass(frozen=True)
class Item:
    id: str
    image: str  # relative to the bundle's image_root
    split: str
    kind: str = "image"


@dataclass(frozen=True)
class Caption:
    id: str
    item: str
    lang: str
    text: str
    source: str
    split: str
    ref: str = ""  # id of the caption this one translates or back-translates ("" if none)


@dataclass
class Manifest:
    name: str
    version: str = "1"
    licence: str = "unspecified"
    description: str = ""
    languages: list[str] = field(default_factory=list)
    image_root: str = "images"
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    format_version: int = FORMAT_VERSION
    extra: dict = field(default_factory=dict)  # builder-specific facts (seed, generator version, ...)


@dataclass
class Bundle:
    root: Path
    manifest: Manifest
    items: list[Item]
    captions: list[Caption]
    noise: dict[str, str] = field(default_factory=dict)  # caption id -> label

    def __post_init__(self):
        self._item_index = {item.id: i for i, item in enumerate(self.items)}

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def languages(self) -> list[str]:
        return list(self.manifest.languages)

    @property
    def image_root(self) -> Path:
        root = Path(self.manifest.image_root)
        return root if root.is_absolute() else self.root / root

    def image_path(self, item: Item | str) -> Path:
        if isinstance(item, str):
            item = self.item(item)
        return self.image_root / item.image

    def item(self, item_id: str) -> Item:
        return self.items[self._item_index[item_id]]

    def item_position(self, item_id: str) -> int:
        return self._item_index[item_id]

    def items_in(self, split: str, kind: str | None = None) -> list[Item]:
        return [it for it in self.items if it.split == split and (kind is None or it.kind == kind)]

    def captions_in(
        self, split: str, lang: str | None = None, source: str | None = None, kind: str | None = None
    ) -> list[Caption]:
        """Captions of a split, optionally one language and a source (exact, or a prefix ending in ':')."""
        out = []
        for cap in self.captions:
            if cap.split != split or (lang is not None and cap.lang != lang):
                continue
            if source is not None and not (cap.source == source or (source.endswith(":") and cap.source.startswith(source))):
                continue
            if kind is not None and self.item(cap.item).kind != kind:
                continue
            out.append(cap)
        return out

    def stats(self) -> Counter:
        """Caption counts keyed by (split, lang, source)."""
        return Counter((c.split, c.lang, c.source) for c in self.captions)

    def format_stats(self) -> str:
        """A plain-text table of items per split and captions per split x language x source."""
        lines = [f"bundle {self.name} v{self.manifest.version} ({self.manifest.licence})"]
        item_counts = Counter((it.split, it.kind) for it in self.items)
        lines.append("items: " + ", ".join(f"{s}/{k} {n}" for (s, k), n in sorted(item_counts.items())))
        lines.append(f"{'split':<6} {'lang':<5} {'source':<28} {'captions':>9}")
        for (split, lang, source), n in sorted(self.stats().items(), key=lambda kv: (SPLITS.index(kv[0][0]) if kv[0][0] in SPLITS else 9, kv[0][1], kv[0][2])):
            lines.append(f"{split:<6} {lang:<5} {source:<28} {n:>9}")
        if self.noise:
            lines.append("noise labels: " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(self.noise.values()).items())))
        return "\n".join(lines)


def _iter_jsonl(path: Path) -> Iterable[tuple[int, dict]]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{path}: file is missing") from None
    for lineno, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BundleError(f"{path}:{lineno}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BundleError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise BundleError(f"{path}:{lineno}: expected a JSON object")
        yield lineno, record


def _require(record: dict, keys: Sequence[str], where: str) -> None:
    for key in keys:
        value = record.get(key)
        if not isinstance(value, str) or not value.strip():
            raise BundleError(f"{where}: field {key!r} is missing or empty")


def source_matches(source: str, wanted: Sequence[str]) -> bool:
    """Whether a caption ``source`` is one of ``wanted``; a wanted source ending in ``:`` matches every
    source with that prefix (``mt:`` matches ``mt:opus``)."""
    return any(source == w or (w.endswith(":") and source.startswith(w)) for w in wanted)


def resolve_bundle(name_or_folder: str | os.PathLike, workspace: str | os.PathLike | None = None) -> Path:
    """The folder of a bundle given as a folder, or as the name of one built into the workspace
    (``<workspace>/bundles/<name>``; ``workspace`` defaults to :func:`ccr_core.paths.workspace_dir`).

    Raises:
        FileNotFoundError: neither exists; the message says where it looked and how to build one.
    """
    value = str(name_or_folder)
    path = Path(value).expanduser()
    if path.is_dir():
        return path
    candidate = None
    if "/" not in value:
        candidate = Path(workspace) / "bundles" / value if workspace is not None else bundle_dir(value)
        if candidate.is_dir():
            return candidate
    where = f" (nor {candidate})" if candidate is not None else ""
    raise FileNotFoundError(f"no bundle folder {value!r}{where}; build one with `ccr data build` or `ccr data import`")


def load_bundle(root: str | os.PathLike, check_images: bool = True, check_hashes: bool = True) -> Bundle:
    """Load and validate a bundle folder; raise :class:`BundleError` naming the file and line."""
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"{root}: not a bundle folder (it does not exist or is not a directory)")
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.exists():
        raise BundleError(f"{manifest_path}: file is missing")
    try:
        raw = read_json(manifest_path)
    except ValueError as exc:
        raise BundleError(str(exc)) from None
    if not isinstance(raw, dict) or "name" not in raw:
        raise BundleError(f"{manifest_path}: expected an object with at least a 'name'")
    known = {f for f in Manifest.__dataclass_fields__}
    manifest = Manifest(**{k: v for k, v in raw.items() if k in known})
    for lang in manifest.languages:
        if lang not in LANGUAGE_CODES:
            raise BundleError(f"{manifest_path}: unknown language code {lang!r}")
    if check_hashes:
        for fname, digest in manifest.files.items():
            fpath = root / fname
            if not fpath.exists():
                raise BundleError(f"{fpath}: listed in the manifest but missing")
            if sha256_file(fpath) != digest:
                raise BundleError(f"{fpath}: content does not match the SHA-256 in {manifest_path} (file altered or truncated)")

    items: list[Item] = []
    seen_items: dict[str, int] = {}
    items_path = root / ITEMS_FILE
    image_root = Path(manifest.image_root) if Path(manifest.image_root).is_absolute() else root / manifest.image_root
    for lineno, rec in _iter_jsonl(items_path):
        where = f"{items_path}:{lineno}"
        _require(rec, ("id", "image", "split"), where)
        if rec["id"] in seen_items:
            raise BundleError(f"{where}: duplicate item id {rec['id']!r} (first on line {seen_items[rec['id']]})")
        if rec["split"] not in SPLITS:
            raise BundleError(f"{where}: unknown split {rec['split']!r} (expected one of {', '.join(SPLITS)})")
        kind = rec.get("kind", "image")
        if kind not in ITEM_KINDS:
            raise BundleError(f"{where}: unknown item kind {kind!r} (expected image or video)")
        if check_images and not (image_root / rec["image"]).exists():
            raise BundleError(f"{where}: image file {image_root / rec['image']} is missing")
        seen_items[rec["id"]] = lineno
        items.append(Item(rec["id"], rec["image"], rec["split"], kind))

    captions: list[Caption] = []
    seen_caps: dict[str, int] = {}
    captions_path = root / CAPTIONS_FILE
    for lineno, rec in _iter_jsonl(captions_path):
        where = f"{captions_path}:{lineno}"
        _require(rec, ("id", "item", "lang", "source", "split"), where)
        text = rec.get("text")
        if not isinstance(text, str) or not text.strip():
            raise BundleError(f"{where}: caption text is empty")
        if rec["id"] in seen_caps:
            raise BundleError(f"{where}: duplicate caption id {rec['id']!r} (first on line {seen_caps[rec['id']]})")
        if rec["item"] not in seen_items:
            raise BundleError(f"{where}: caption points at no item ({rec['item']!r} is not in {ITEMS_FILE})")
        if rec["lang"] not in LANGUAGE_CODES:
            raise BundleError(f"{where}: unknown language code {rec['lang']!r}")
        if not SOURCE_PATTERN.match(rec["source"]):
            raise BundleError(
                f"{where}: unknown source {rec['source']!r} (expected human, human-translation, "
                "mt:<system>, back-translation:<system> or generated)"
            )
        if rec["split"] not in SPLITS:
            raise BundleError(f"{where}: unknown split {rec['split']!r}")
        ref = rec.get("ref", "")
        if not isinstance(ref, str):
            raise BundleError(f"{where}: field 'ref' must be a caption id")
        seen_caps[rec["id"]] = lineno
        captions.append(Caption(rec["id"], rec["item"], rec["lang"], text, rec["source"], rec["split"], ref))
    for cap in captions:
        if cap.ref and cap.ref not in seen_caps:
            raise BundleError(f"{captions_path}:{seen_caps[cap.id]}: 'ref' points at no caption ({cap.ref!r})")

    noise: dict[str, str] = {}
    noise_path = root / NOISE_FILE
    if noise_path.exists():
        for lineno, rec in _iter_jsonl(noise_path):
            where = f"{noise_path}:{lineno}"
            _require(rec, ("caption", "label"), where)
            if rec["caption"] not in seen_caps:
                raise BundleError(f"{where}: noise label for unknown caption {rec['caption']!r}")
            noise[rec["caption"]] = rec["label"]
    return Bundle(root, manifest, items, captions, noise)


def _write_jsonl(path: Path, records: Iterable[dict]) -> str:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            for rec in records:
                handle.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return sha256_file(path)


def _caption_record(caption: Caption) -> dict:
    record = asdict(caption)
    if not record["ref"]:
        del record["ref"]
    return record


def save_bundle(
    root: str | os.PathLike,
    manifest: Manifest,
    items: Sequence[Item],
    captions: Sequence[Caption],
    noise: dict[str, str] | None = None,
) -> Path:
    """Write a bundle folder. Each file is written atomically and the manifest, written last,
    carries their hashes, so a bundle whose writer was killed never validates."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / MANIFEST_FILE).unlink(missing_ok=True)  # an interrupted rewrite must not look complete
    files = {
        ITEMS_FILE: _write_jsonl(root / ITEMS_FILE, (asdict(it) for it in items)),
        CAPTIONS_FILE: _write_jsonl(root / CAPTIONS_FILE, (_caption_record(c) for c in captions)),
    }
    if noise:
        files[NOISE_FILE] = _write_jsonl(root / NOISE_FILE, ({"caption": k, "label": v} for k, v in noise.items()))
    else:
        (root / NOISE_FILE).unlink(missing_ok=True)
    if not manifest.languages:
        manifest.languages = sorted({c.lang for c in captions})
    manifest.files = files
    write_json_atomic(root / MANIFEST_FILE, asdict(manifest))
    return root


def _describe_folder(folder: Path) -> str:
    manifest = folder / MANIFEST_FILE
    if manifest.is_file():
        try:
            raw = read_json(manifest)
            name = raw.get("name", "?") if isinstance(raw, dict) else "?"
        except (ValueError, OSError):
            name = "?"
        return f"it holds the bundle {name!r}"
    return "it holds files that are not a bundle"


def check_output_folder(out_dir: str | os.PathLike, force: bool = False, keep: Sequence[str | os.PathLike] = ()) -> None:
    """Refuse an output folder that is taken, before any work is done.

    A missing or empty folder is fine. An existing bundle folder (one with a manifest) is replaced
    only with ``force``; a non-empty folder that is not a bundle is never replaced. ``keep`` are
    folders that must survive (e.g. the image folder being imported): one inside ``out_dir`` is refused.
    """
    out = Path(out_dir).absolute()
    for path in keep:
        inner = Path(path).absolute()
        if inner == out or out in inner.parents:
            raise BundleExistsError(f"{out}: the folder {inner} lies inside it; write the bundle somewhere else")
    if not out.exists():
        return
    if not out.is_dir():
        raise BundleExistsError(f"{out}: exists and is not a folder")
    if not any(out.iterdir()):
        return
    is_bundle = (out / MANIFEST_FILE).is_file()
    if not is_bundle:
        raise BundleExistsError(f"{out}: already exists and {_describe_folder(out)}; choose another folder (it is never replaced)")
    if not force:
        raise BundleExistsError(
            f"{out}: already exists and {_describe_folder(out)}; pass --force to replace it, write to another folder, "
            "or combine bundles with `ccr data merge`"
        )


def publish_bundle(out_dir: str | os.PathLike, write: Callable[[Path], object], force: bool = False,
                   keep: Sequence[str | os.PathLike] = ()) -> Path:
    """Build a bundle with ``write(folder)`` in a hidden folder beside ``out_dir``, validate it, then
    move it into place in one rename, so ``out_dir`` holds either its old content or the complete
    new bundle, never a half-written one. An existing bundle there is replaced only with ``force``
    (see :func:`check_output_folder`)."""
    out = Path(out_dir).absolute()
    check_output_folder(out, force, keep)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.writing-", dir=out.parent))
    old = None
    try:
        write(staging)
        load_bundle(staging, check_images=False)  # ids, codes, splits and hashes
        if out.exists():
            check_output_folder(out, force, keep)  # still true after the (possibly long) build
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.replaced-", dir=out.parent))
            os.replace(out, old / "bundle")
        os.replace(staging, out)
    except BaseException:
        if old is not None and not out.exists():
            os.replace(old / "bundle", out)  # put the old bundle back
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return out
