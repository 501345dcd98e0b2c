"""Merge bundles (e.g. one per language) into one that references every source's images."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from ccr_core.data.bundle import (Bundle, BundleError, Caption, Item, Manifest, check_output_folder, load_bundle, publish_bundle,
                                  save_bundle)


def merge_bundles(
    bundles: Sequence[str | os.PathLike | Bundle], out_dir: str | os.PathLike, name: str | None = None, force: bool = False
) -> Path:
    """One bundle from several: items matched by id (the same id must be the same image file, in the
    same split), captions concatenated (an identical caption is kept once; a different caption under
    a taken id gets the next free number), noise labels kept. Images are referenced, never copied:
    the merged ``image_root`` is the deepest folder holding every source's images.

    Raises:
        BundleError: an item id that names two different files, or one image in two splits.
    """
    loaded = [b if isinstance(b, Bundle) else load_bundle(b, check_images=False) for b in bundles]
    if len(loaded) < 2:
        raise ValueError("merge needs at least two bundles")
    check_output_folder(out_dir, force, keep=[b.root for b in loaded])
    roots = [b.image_root.absolute() for b in loaded]
    common = Path(os.path.commonpath([str(r) for r in roots]))
    items: dict[str, tuple[Item, Path, str]] = {}  # id -> (item with path relative to common, absolute file, bundle name)
    for bundle, root in zip(loaded, roots):
        for it in bundle.items:
            absolute = (root / it.image).resolve()
            rel = os.path.relpath(root / it.image, common)
            if it.id in items:
                first, first_file, first_name = items[it.id]
                if first_file != absolute:
                    raise BundleError(f"item {it.id!r} is {first_file} in {first_name!r} but {absolute} in {bundle.name!r}")
                if first.split != it.split or first.kind != it.kind:
                    raise BundleError(f"item {it.id!r} is {first.split}/{first.kind} in {first_name!r} but {it.split}/{it.kind} in {bundle.name!r}")
                continue
            items[it.id] = (Item(it.id, rel, it.split, it.kind), absolute, bundle.name)
    captions: list[Caption] = []
    taken: dict[str, Caption] = {}  # caption id -> caption, over the bundles merged so far
    noise: dict[str, str] = {}
    numbered = re.compile(r"^(?P<head>.*#)(?P<n>\d+)$")
    for bundle in loaded:
        new_id: dict[str, str] = {}  # this bundle's caption id -> its id in the merged bundle
        fresh: list[Caption] = []
        for cap in bundle.captions:
            same = taken.get(cap.id)
            if same is not None and (same.item, same.lang, same.text, same.source) == (cap.item, cap.lang, cap.text, cap.source):
                new_id[cap.id] = cap.id  # the same caption, met again
                continue
            cid = cap.id
            if same is not None:
                match = numbered.match(cap.id)
                head, n = (match["head"], int(match["n"])) if match else (cap.id + "#", 0)
                while f"{head}{n}" in taken:
                    n += 1
                cid = f"{head}{n}"
            new_id[cap.id] = cid
            taken[cid] = cap
            fresh.append(cap)
        # refs point into the same bundle; rename them with it
        captions += [Caption(new_id[c.id], c.item, c.lang, c.text, c.source, c.split, new_id.get(c.ref, c.ref) if c.ref else "") for c in fresh]
        for cid, label in bundle.noise.items():
            noise[new_id.get(cid, cid)] = label
    manifest = Manifest(
        name=name or Path(out_dir).absolute().name,
        licence=" + ".join(dict.fromkeys(b.manifest.licence for b in loaded)),
        description="Merged from " + ", ".join(f"{b.name} ({b.root})" for b in loaded) + ".",
        image_root=str(common),
        extra={"merged_from": [{"name": b.name, "root": str(b.root.absolute()), "items": len(b.items), "captions": len(b.captions)} for b in loaded]},
    )
    return publish_bundle(out_dir, lambda folder: save_bundle(folder, manifest, [v[0] for v in items.values()], captions, noise),
                          force, keep=[b.root for b in loaded])
