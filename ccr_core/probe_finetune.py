"""How far do the backbones move when their top layers train? A probe of the Flickr8k-ML quality gap.

    python -m ccr_core.probe_finetune --image-from 15 --text-layers 1 [--epochs 8] [--data flickr8k-ml]

The issue's floor (frozen e5 + frozen EfficientNet-Lite0 pooled features, one linear map per side,
InfoNCE on English + Chinese MT) is the quality bar; every method here trains heads on frozen
features and none beats it by the required 15%. This probe measures the one family of levers left:
fine-tuning the *top of the backbones* under the floor's own recipe.

- Image side: the EfficientNet-Lite0 feature map at the input of block 12 (192 x 7 x 7) is computed once
  per image and per horizontal flip (float16, ``<workspace>/probes/<bundle>/``); blocks
  ``--image-from`` .. 15 and the 1x1 head convolution then train (BatchNorm statistics stay frozen);
  ``--image-from 16`` trains only the head convolution, ``17`` nothing (the floor).
- Text side: ``--text-layers k`` trains the top ``k`` e5 layers over the cached frozen states
  (:class:`ccr_core.training.text_cache.TextTop`); 0 uses the frozen mean-pooled e5 embedding.
- Both sides end in one linear map into a 256-d space; the loss is the floor's symmetric InfoNCE
  (temperature 0.08) on (image, English) and (image, its Chinese MT). One epoch = every training image
  once, with all five of its English captions and a Chinese MT of each.
- Model selection on validation Chinese text->image R@1+5+10 (as the trainer); the test numbers of the
  selected epoch are reported. Results go to ``results/probes/<bundle>-finetune.json`` (one entry per
  setting, replaced when rerun) and ``results/probes/README.md`` is rewritten from that file.

This is a measurement tool, not a shipped method: nothing it trains is saved as a checkpoint.
"""
from __future__ import annotations

import argparse
import copy
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from ccr_core.io import atomic_path, file_lock, read_json, write_json_atomic, write_text_atomic
from ccr_core.paths import REPO_ROOT, workspace_dir

CACHE_BLOCK = 12  # feature maps are cached at the input of this EfficientNet block (7 x 7 x 192)
PROBE_DIR = REPO_ROOT / "results" / "probes"


def feature_maps(bundle, backbone, items, out_dir: Path, progress: bool = True) -> np.ndarray:
    """(2, N, 192, 7, 7) float16 maps at block ``CACHE_BLOCK``'s input; [1] is the flipped image. Cached."""
    from ccr_core.backbones.vision import load_rgb

    path = out_dir / f"maps-block{CACHE_BLOCK}-{backbone.identity_key()}.npy"
    ids_path = path.with_suffix(".ids.json")
    ids = [it.id for it in items]
    if path.exists() and ids_path.exists() and read_json(ids_path) == ids:
        return np.load(path, mmap_mode="r")
    net = backbone.net
    maps = None
    with torch.no_grad():
        for s in tqdm(range(0, len(items), 64), disable=not progress, desc="feature maps", unit="batch"):
            x = torch.stack([backbone.preprocess(load_rgb(bundle.image_path(it))) for it in items[s : s + 64]])
            for flip, view in enumerate((x, x.flip(3))):
                h = net._swish(net._bn0(net._conv_stem(view)))
                for block in net._blocks[:CACHE_BLOCK]:
                    h = block(h)
                if maps is None:
                    maps = np.zeros((2, len(items), *h.shape[1:]), dtype=np.float16)
                maps[flip, s : s + len(view)] = h.numpy().astype(np.float16)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, maps)
    write_json_atomic(ids_path, ids)
    return np.load(path, mmap_mode="r")


class ImageTop(nn.Module):
    """EfficientNet-Lite0 from block ``CACHE_BLOCK`` on: frozen blocks, trainable blocks from ``train_from``,
    head conv + BN + ReLU6 (trainable unless ``train_from`` = 17), mean pool, linear map."""

    def __init__(self, net, train_from: int, embed_dim: int = 256):
        super().__init__()
        if not CACHE_BLOCK <= train_from <= 17:
            raise ValueError(f"--image-from must be in {CACHE_BLOCK}..17, got {train_from}")
        blocks = [copy.deepcopy(b) for b in net._blocks[CACHE_BLOCK:]]
        self.frozen = nn.ModuleList(blocks[: max(0, train_from - CACHE_BLOCK)])
        self.trained = nn.ModuleList(blocks[max(0, train_from - CACHE_BLOCK):])
        self.head, self.bn = copy.deepcopy(net._conv_head), copy.deepcopy(net._bn1)
        for p in self.parameters():
            p.requires_grad_(False)
        top = list(self.trained.parameters()) + (list(self.head.parameters()) + list(self.bn.parameters()) if train_from <= 16 else [])
        for p in top:
            p.requires_grad_(True)
        self.map = nn.Linear(net._conv_head.out_channels, embed_dim)

    def train(self, mode: bool = True):
        super().train(mode)
        for m in self.modules():  # BatchNorm statistics stay ImageNet's (batches of 128 from 6,000 images)
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            for block in self.frozen:
                x = block(x)
        for block in self.trained:
            x = block(x)
        x = F.relu6(self.bn(self.head(x)))  # (B, 1280, 7, 7)
        return F.normalize(self.map(x.mean(dim=(2, 3))), dim=-1)  # (B, E)


class TextSide(nn.Module):
    """Mean-pooled, L2-normalised e5 embedding (after ``TextTop`` when layers train) -> linear map."""

    def __init__(self, text_top, dim: int, embed_dim: int = 256):
        super().__init__()
        self.top = text_top
        self.map = nn.Linear(dim, embed_dim)

    def sentence(self, batch) -> torch.Tensor:
        """The e5 sentence embedding (B, D) before the map."""
        from ccr_core.methods.heads import masked_mean

        states = batch.states if self.top is None else self.top(batch.states, batch.mask)
        return F.normalize(masked_mean(states, batch.mask), dim=-1)

    def forward(self, batch) -> torch.Tensor:
        return F.normalize(self.map(self.sentence(batch)), dim=-1)


class FrozenSentences:
    """Sentence embeddings of a frozen text side, computed once per caption text (the cache holds token states)."""

    def __init__(self, text: TextSide, states):
        self.text, self.states, self.rows = text, states, {}

    def __call__(self, texts) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self.rows]
        for s in range(0, len(missing), 1024):
            with torch.no_grad():
                emb = self.text.sentence(self.states.batch(missing[s : s + 1024]))
            self.rows.update(zip(missing[s : s + 1024], emb))
        return F.normalize(self.text.map(torch.stack([self.rows[t] for t in texts])), dim=-1)


def run(data: str = "flickr8k-ml", image_from: int = 15, text_layers: int = 0, epochs: int = 8, lr: float = 1e-3,
        backbone_lr: float = 1e-4, temperature: float = 0.08, batch_size: int = 128, seed: int = 0, progress: bool = True,
        text_backbone: str = "e5-small") -> dict:
    """Train one setting; return its record (per-epoch validation, test numbers at the selected epoch)."""
    from ccr_core.backbones.vision import EfficientNetLite0
    from ccr_core.eval.metrics import recall_at_k, retrieval_report, text_to_image_ranks
    from ccr_core.evaluate import group_queries, query_groups
    from ccr_core.methods.losses import info_nce
    from ccr_core.training.data import training_examples
    from ccr_core.training.text_cache import TextTop
    from ccr_core.training.train import TrainConfig, prepare_workbench

    if not CACHE_BLOCK <= image_from <= 17:
        raise ValueError(f"--image-from must be in {CACHE_BLOCK}..17, got {image_from}")
    torch.manual_seed(seed)
    rng = random.Random(seed)
    cfg = TrainConfig(method="floor", data=data, target_langs=["zh"], target_sources=["mt:"], trainable_layers=text_layers,
                      text_backbone=text_backbone)
    bench = prepare_workbench(cfg, workspace_dir(), progress=progress)
    bundle = bench.bundle
    if "zh" not in query_groups(bundle, "val"):
        raise ValueError(f"{bundle.name}: no Chinese validation captions to select the epoch on")
    items = [it for it in bundle.items if it.kind == "image"]
    backbone = EfficientNetLite0()
    maps = feature_maps(bundle, backbone, items, workspace_dir() / "probes" / bundle.name, progress)
    row = {it.id: k for k, it in enumerate(items)}
    text_of = {c.id: c.text for c in bundle.captions}

    by_image: dict[str, list] = defaultdict(list)
    for ex in training_examples(bundle, "train", ["zh"], ["mt:"]):
        if ex.targets.get("zh"):
            by_image[ex.item_id].append(ex)
    train_ids = sorted(by_image)
    if len(train_ids) < batch_size:
        raise ValueError(f"{bundle.name}: {len(train_ids)} training images with Chinese MT, fewer than one batch of {batch_size}")

    image = ImageTop(backbone.net, image_from)
    text = TextSide(TextTop(bench.text_encoder, text_layers) if text_layers else None, int(bench.text_states.states.shape[1]))
    heads = list(image.map.parameters()) + list(text.map.parameters())
    head_ids = {id(p) for p in heads}
    tops = [p for p in list(image.parameters()) + list(text.parameters()) if p.requires_grad and id(p) not in head_ids]
    groups = [{"params": heads, "lr": lr}] + ([{"params": tops, "lr": backbone_lr}] if tops else [])
    optimizer = torch.optim.Adam(groups)

    if text_layers:
        def encode(texts) -> torch.Tensor:
            return text(bench.text_states.batch(list(texts)))
    else:  # nothing below the map trains: pool each caption once
        encode = FrozenSentences(text, bench.text_states)

    def visual(ids, flips) -> torch.Tensor:
        return torch.from_numpy(np.stack([maps[f, row[i]] for i, f in zip(ids, flips)]).astype(np.float32))

    @torch.no_grad()
    def evaluate(split: str, only: str | None = None) -> dict:
        image.eval(), text.eval()
        split_items = bundle.items_in(split, "image")
        position = {it.id: k for k, it in enumerate(split_items)}
        ids = [it.id for it in split_items]
        v = torch.cat([image(visual(ids[s : s + 256], [0] * len(ids[s : s + 256]))) for s in range(0, len(ids), 256)])
        out = {}
        for group, _, caps, gallery, c2i in group_queries(bundle, split, position):
            if only is not None and group != only:
                continue
            t = torch.cat([encode([c.text for c in caps[s : s + 512]]) for s in range(0, len(caps), 512)])
            sim = (t @ v[gallery].T).numpy()
            if only is not None:
                return {"t2i_recall_sum": float(sum(recall_at_k(text_to_image_ranks(sim, c2i)).values()))}
            out[group] = {k: round(val, 2) if isinstance(val, float) else val for k, val in retrieval_report(sim, c2i).items()}
        return out

    history, best, best_test = [], -1.0, None
    start = time.perf_counter()
    for epoch in range(epochs):
        image.train(), text.train()
        rng.shuffle(train_ids)
        steps = range(0, len(train_ids) - batch_size + 1, batch_size)
        bar = tqdm(steps, disable=not progress, desc=f"probe epoch {epoch + 1}/{epochs}", unit="step")
        for s in bar:
            ids = train_ids[s : s + batch_size]
            v = image(visual(ids, [rng.randint(0, 1) for _ in ids]))  # (B, E), one random flip per image
            loss = v.new_zeros(())
            for slot in range(5):  # every English caption of every image (and a Chinese MT of each) per epoch
                exs = [by_image[i][slot % len(by_image[i])] for i in ids]
                en = encode([text_of[ex.source] for ex in exs])
                zh = encode([text_of[rng.choice(ex.targets["zh"])] for ex in exs])
                loss = loss + info_nce(v, en, temperature) + info_nce(v, zh, temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.set_postfix(loss=f"{float(loss.detach()) / 10:.3f}")
        score = evaluate("val", only="zh")["t2i_recall_sum"]
        history.append({"epoch": epoch + 1, "val_zh_t2i_recall_sum": round(score, 2), "seconds": round(time.perf_counter() - start, 1)})
        if progress:
            print(f"epoch {epoch + 1}: val zh t2i R@1+5+10 = {score:.1f}{' (best)' if score > best else ''}", flush=True)
        if score > best:
            best, best_epoch, best_test = score, epoch + 1, evaluate("test")
    return {"setting": setting_name(image_from, text_layers), "data": data, "text_backbone": text_backbone, "image_from": image_from, "text_layers": text_layers,
            "epochs": epochs, "lr": lr, "backbone_lr": backbone_lr, "temperature": temperature, "batch_size": batch_size, "seed": seed,
            "trainable_backbone_params": sum(p.numel() for p in tops), "train_seconds": round(time.perf_counter() - start, 1),
            "best_epoch": best_epoch, "history": history, "test": best_test}


def setting_name(image_from: int, text_layers: int) -> str:
    image = "image frozen" if image_from >= 17 else ("image head conv" if image_from == 16 else f"image blocks {image_from}-15 + head")
    return f"{image}; text {'frozen' if text_layers == 0 else f'top {text_layers} e5 layer(s)'}"


def markdown(records: list[dict]) -> str:
    from ccr_core.experiments import issue_goals

    groups = [g for g in ("en", "zh", "zh/human-translation", "de", "fr", "cs") if any(g in (r["test"] or {}) for r in records)]
    lines = ["# Backbone fine-tuning probe (Flickr8k-ML)", "",
             "Written by `python -m ccr_core.probe_finetune` (see its `--help`); one row per setting, test SumR at the epoch",
             "selected on validation Chinese. The floor recipe throughout: one linear map per side, InfoNCE τ 0.08 on",
             "(image, English) and (image, Chinese MT); only what the setting names is fine-tuned. Not shipped checkpoints.", "",
             "| setting | " + " | ".join(f"{g} SumR" for g in groups) + " | best epoch / epochs | seconds (training + validation) |",
             "|---|" + "---|" * len(groups) + "---|---|"]
    for r in records:
        lines.append(f"| {r['setting']} | " + " | ".join(f"{r['test'][g]['SumR']:.1f}" if g in r["test"] else "–" for g in groups)
                     + f" | {r['best_epoch']} / {r['epochs']} | {r['train_seconds']:.0f} |")
    lines += ["", "Issue goal (the issue's floor + 15%): " + ", ".join(f"{g} ≥ {v}" for g, v in issue_goals().items()) + ".", ""]
    return "\n".join(lines)


def save(record: dict, out: Path) -> list[dict]:
    """Add (or replace) the record for its setting in ``out`` and rewrite the markdown beside it."""
    with file_lock(out.parent / f".{out.name}.lock"):  # hidden and git-ignored, as benchmarks/.RESULTS.md.lock
        records = read_json(out) if out.exists() else []
        records = [r for r in records if (r["setting"], r["epochs"]) != (record["setting"], record["epochs"])] + [record]
        records.sort(key=lambda r: (-r["image_from"], r["text_layers"], r["epochs"]))
        write_json_atomic(out, records)
        write_text_atomic(out.parent / "README.md", markdown(records))
    return records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ccr_core.probe_finetune", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--data", default="flickr8k-ml", help="bundle name or folder (default flickr8k-ml)")
    parser.add_argument("--image-from", type=int, default=15, help="first trainable EfficientNet block, 12..15; 16 = head conv only; 17 = frozen")
    parser.add_argument("--text-layers", type=int, default=0, help="top e5 layers to train (0 = frozen)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of the two linear maps")
    parser.add_argument("--backbone-lr", type=float, default=1e-4, help="learning rate of the trained backbone layers")
    parser.add_argument("--batch-size", type=int, default=128, help="images per step (each with its five English captions)")
    parser.add_argument("--text-backbone", default="e5-small", help="text backbone name (default e5-small)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="results JSON (default results/probes/<data>-finetune.json)")
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    if args.batch_size < 2:
        parser.error("--batch-size must be at least 2")
    if args.text_layers < 0:
        parser.error("--text-layers must be 0 or more")
    try:
        record = run(args.data, args.image_from, args.text_layers, args.epochs, args.lr, args.backbone_lr,
                     batch_size=args.batch_size, seed=args.seed, text_backbone=args.text_backbone)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", flush=True)
        return 2
    out = args.out or PROBE_DIR / f"{Path(args.data).name}-finetune.json"
    save(record, out)
    print(markdown([record]))
    print(f"wrote {out} and {out.parent / 'README.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
