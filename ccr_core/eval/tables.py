"""Markdown tables of evaluation results (``ccr eval``'s results.md): retrieval per query group and the
noise detectors."""
from __future__ import annotations


def markdown_table(results: list[dict], metric: str = "SumR") -> str:
    """One row per model: R@1/5/10 both directions and SumR per query group, MRV, noise AUROC, and
    training seconds -- or, when some model is evaluated on a bundle it was not trained on, the
    bundle each was trained on instead."""
    groups = sorted({g for r in results for g in r.get("groups", {})})
    foreign = any(r.get("trained_on") not in (None, r.get("evaluated_on")) for r in results)
    header = ["model"] + [f"{g} {metric}" for g in groups] + ["MRV (i2t/t2i)", "noise AUROC", "trained on" if foreign else "train s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in results:
        row = [r["model"]]
        for g in groups:
            rep = r.get("groups", {}).get(g)
            row.append(f"{rep[metric]:.1f}" if rep else "")
        m = r.get("mrv", {})
        row.append(f"{m['mrv_i2t']:.2f} / {m['mrv_t2i']:.2f}" if "mrv_i2t" in m else "")
        row.append(f"{r['noise']['auroc']:.3f}" if r.get("noise") else "")
        if foreign:
            row.append(str(r.get("trained_on", "")))
        else:
            row.append(f"{r['train_seconds']:.0f}" if r.get("train_seconds") else "")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def detector_table(results: list[dict]) -> str:
    """One row per model evaluated on noisy training pairs: every detector's AUROC / AUPRC / precision at
    the number of noisy pairs, the trivial ones (cosine, per-pair loss) first. Empty without such rows."""
    rows = [r for r in results if r.get("detectors")]
    if not rows:
        return ""
    names = [n for n in ("cosine", "pair_loss", "uncertainty", "mismatch") if any(n in r["detectors"] for r in rows)]
    labels = {"cosine": "1 − cosine (trivial)", "pair_loss": "per-pair loss (trivial)", "uncertainty": "UML u = B/S", "mismatch": "UML DECL score"}
    lines = ["Noise detectors on the injected noisy pairs (AUROC / AUPRC / precision@#noisy):", "",
             "| model | noisy share | " + " | ".join(labels[n] for n in names) + " |", "|" + "---|" * (len(names) + 2)]
    for r in rows:
        cells = [" / ".join(f"{r['detectors'][n][k]:.3f}" for k in ("auroc", "auprc", "precision_at_n_noisy")) if n in r["detectors"] else "" for n in names]
        lines.append(f"| {r['model']} | {r.get('noisy_fraction', 0):.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
