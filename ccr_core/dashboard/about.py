"""About tab: in plain words first -- the task, each method in a sentence, the words the dashboard uses,
what the comparison found (holds / not resolved) -- then, for researchers, each method's key formula
and citation, how the numbers are measured, and the world's dataset card (from the bundle manifest)."""
from __future__ import annotations

from collections import Counter

from ccr_core.dashboard.glossary import TERMS, glossary_markdown
from ccr_core.dashboard.world import World, language_name
from ccr_core.methods import main_methods

PLAIN_MD = """
## In plain words
These models find pictures from a description written in many languages, and descriptions from a picture. They learned from
English descriptions written by people and from **machine translations** of them into other languages. Machine translation makes
mistakes: some translated descriptions are wrong, and some are attached to the wrong picture (*noisy correspondence*). The methods
differ in how they keep those mistakes from spoiling what they learn:
""" + "\n".join(f"- {TERMS[m]}" for m in main_methods()) + "\n"

FINE_TUNED_MD = ("In this world the models named `<method>-ft` also fine-tune the last two EfficientNet-Lite0 blocks and its head "
                 "convolution, as the papers train their encoders' upper layers; `floor` and `baseline-en` stay frozen (the floor is the "
                 "reference those gains are measured against).")

METHODS_MD = r"""
## The methods, for researchers
Every model here shares one frozen image encoder and one multilingual text backbone; only small heads (and optionally the top
text layers) are trained. Notation: $v$ image, $s$ English caption, $t$ target-language (MT) caption, $b$ back-translation; all
L2-normalised, so $a\cdot b$ is a cosine.

### Baseline: translate-train contrastive
Train on $(v,s)$ and $(v,t)$ pairs with a symmetric InfoNCE loss,
$$\mathcal{L} = -\tfrac{1}{2B}\sum_i \Big[\log \tfrac{e^{v_i\cdot t_i/\tau}}{\sum_j e^{v_i\cdot t_j/\tau}} + \log \tfrac{e^{v_i\cdot t_i/\tau}}{\sum_j e^{v_j\cdot t_i/\tau}}\Big].$$
`baseline-en` trains on English only and is evaluated zero-shot on the other languages: what the multilingual backbone gives for free.

### Floor: one linear map on each side
Frozen e5 sentence embeddings and frozen image features, each through a single linear map, trained with the same InfoNCE on
English and machine-translated captions. The simplest model on the shared backbones: every method must clearly beat it.

### NRCCR — noise-robust learning
*Y. Wang et al., "Cross-Lingual Cross-Modal Retrieval with Noise-Robust Learning", ACM Multimedia 2022.*
A shared text tower with self- and cross-attention builds a pseudo-target $h^C$ = attention(source → target tokens), and learns
from it in two views, plus back-translation consistency and a language adversary:
$$\mathcal{L} = \mathrm{Tri}(c^S,v) + 0.6\,\mathrm{Tri}(c^T,v) + 0.4\,\mathcal{L}_{sim} + 0.1\,\mathcal{L}_{feat} + 0.5\,\mathrm{Tri}(c^S,c^B) + 0.001\,\mathcal{L}_{adv},$$
with $\mathrm{Tri}$ the VSE++ hardest-negative triplet loss, $\mathcal{L}_{sim}$ a soft cross-entropy from teacher
$\mathrm{softmax}_j(v_i\cdot h^C_j/\tau)$ to student $\mathrm{softmax}_j(v_i\cdot c^T_j/\tau)$ and $\mathcal{L}_{feat}$ a SmoothL1 between $c^T$ and $h^C$.

### CL2CM — cross-lingual to cross-modal knowledge transfer
*Z. Wang et al., "CL2CM: Improving Cross-Lingual Cross-Modal Retrieval via Cross-Lingual Knowledge Transfer", AAAI 2024.*
A text↔text network (English vs target: same modality, smaller gap, more reliable) teaches the image↔text network by relational distillation:
$$\mathcal{L} = \mathcal{L}_{CM} + \lambda_1\big(\mathcal{L}_{sent}(s,t) + w_{OT}\langle T^*, C\rangle\big) + \lambda_2\,\mathrm{KL}\big(P^{CL}_i \,\|\, P^{CM}_i\big),\quad
P^{CL}_i=\mathrm{softmax}_j(s_i\cdot t_j/\tau),\ P^{CM}_i=\mathrm{softmax}_j(v_i\cdot t_j/\tau),$$
where $T^*$ is the Sinkhorn optimal transport between the tokens of $s$ and $t$ (word-level alignment). *Our reading where the code is not public.*

### UML — uncertainty-aware and mutual learning
*"Uncertainty-aware and Mutual Learning for Noise-robust Cross-lingual Cross-modal Retrieval", Science China Information Sciences 2025.*
Evidential learning gives each pair a Dirichlet over its batch, from two views (image → $t$ and English → $t$):
$$e_{ij} = \exp(\tanh(s_{ij})/\tau_e),\quad \alpha = e + 1,\quad u_i = \frac{B}{\sum_j \alpha_{ij}} \in (0,1].$$
Noisy pairs are found as DECL does (after a warm-up with one-hot labels): the symmetric evidence $E+E^\top$ is row-normalised and a
pair is flagged when its own candidate is not its row's argmax; its score is $1-$ its normalised own evidence, certainty $c_i = 1-$score.
A flagged pair loses its label in the Fisher-weighted evidential loss (whose KL term always keeps the hard label) and leaves the ranking
term; the adaptive mutual learning loss pulls $v,s,t$ of clean pairs together with weight $c_i$ and pushes only flagged $t$ below their
hardest clean negative. $u$ is still an output (Audit tab, Search tab), shown beside the detector training uses and the trivial ones.
*Our interpretation; the authors' code is not public (DECL's and I-EDL's are, and their pieces were checked against it).*

### 1-to-K contrastive learning
*Z. Nie et al., "Improving the Consistency in Cross-Lingual Cross-Modal Retrieval with 1-to-K Contrastive Learning", KDD 2024.*
Each image competes against the captions of all $K$ languages at once, so no language is a pivot:
$$\mathcal{L}_{i2t} = -\frac{1}{B}\sum_i\sum_k \log\frac{e^{v_i\cdot t_{i,k}/\tau}}{\sum_j\sum_{k'} e^{v_i\cdot t_{j,k'}/\tau}},\qquad
\mathcal{L} = \frac{\mathcal{L}_{i2t}+\mathcal{L}_{t2i}}{2K}.$$

## How it is measured
- **R@K**: share of queries whose correct answer is in the top $K$ (text→image: the caption's image among all test images;
  image→text: the best-placed own caption). **SumR** = R@1+R@5+R@10 of both directions (max 600).
- **MRV** (mean rank variance, from the 1-to-K paper): for each instance $i$ (one image with one caption per language $\ell\in L$),
  $\sigma_i = \mathrm{std}_{\ell}(r_i^{\ell})$ (population std of the ranks), and $\mathrm{MRV} = \frac{1}{n}\sum_i \sigma_i$. Lower = more consistent across languages.
- **Ties** are broken by a stable rule (higher score first, then the lower index), so every number is reproducible.
"""


def dataset_card(world: World) -> str:
    m = world.bundle.manifest
    items = Counter((it.split, it.kind) for it in world.bundle.items)
    caps = Counter((c.split, c.lang) for c in world.bundle.captions)
    sources = Counter(c.source.split(":")[0] for c in world.bundle.captions)
    lines = [f"## Dataset card: {m.name} (version {m.version})", "", m.description or "_No description in the manifest._", "",
             f"- **Licence:** {m.licence}",
             f"- **Languages:** {', '.join(f'{language_name(l)} (`{l}`)' for l in m.languages)}",
             "- **Items:** " + ", ".join(f"{s} {k}s: {n}" for (s, k), n in sorted(items.items())),
             "- **Captions by source:** " + ", ".join(f"{s}: {n}" for s, n in sorted(sources.items()))]
    if world.bundle.noise:
        noise = Counter(world.bundle.noise.values())
        lines.append("- **Noise labels (training):** " + ", ".join(f"{k}: {v}" for k, v in sorted(noise.items())))
    lines += ["", "| split | " + " | ".join(world.bundle.languages) + " |", "|---|" + "---|" * len(world.bundle.languages)]
    for split in ("train", "val", "test"):
        lines.append(f"| {split} | " + " | ".join(str(caps.get((split, l), 0)) for l in world.bundle.languages) + " |")
    if m.extra:
        lines += ["", "<details><summary>Builder facts</summary>", "", *(f"- `{k}`: {v}" for k, v in sorted(m.extra.items()) if not isinstance(v, (dict, list))), "", "</details>"]
    lines += ["", "## Models in this world", "", "| model | method | train noise | checkpoint (SHA-256) |", "|---|---|---|---|"]
    for model in world.model_list():
        lines.append(f"| {model.label} | {model.method} | {model.noise:g} | `{model.checkpoint_hash[:12]}` |")
    return "\n".join(lines)


def measured_findings(world: World) -> str:
    """What the equal-budget comparison found on this world (results/protocol-<world>.json), stated plainly:
    the research answers, including where UML's detector is no better than the trivial one."""
    from ccr_core.io import read_json
    from ccr_core.paths import REPO_ROOT
    from ccr_core.study.report import research_answers
    from ccr_core.study import records
    from ccr_core.study.stats import cells

    path = REPO_ROOT / "results" / f"protocol-{world.name}.json"
    if not path.exists():
        return "## What the comparison found\n\nNo equal-budget comparison has been run for this world yet (`python -m ccr_core.experiments --world ...`)."
    table = cells(records.world_table_records("protocol", world.name, path.parent))
    return "\n".join(["## What the comparison found", "", "From the equal-budget grid (3 seeds, 95% intervals; RESULTS.md has the tables).", "",
                      *research_answers(world.name, table)])


def about_markdown(world: World) -> str:
    """Plain words, the glossary and what was found first; the formulas and the dataset card after them."""
    fine_tuned = any(m.fine_tuned for m in world.model_list())
    words = "## Words used here\n" + glossary_markdown(fine_tuned, methods=False)
    parts = [PLAIN_MD, *([FINE_TUNED_MD] if fine_tuned else []), words, measured_findings(world), METHODS_MD, dataset_card(world)]
    return "\n\n".join(parts)


LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


def build_tab(world: World, page) -> None:
    """The About tab: methods, formulas, citations and the dataset card."""
    import gradio as gr

    with gr.Tab("About", id="about"):
        # ~15 KB of text: written at page load (ui.Page.lazy), not carried in the page config.
        about = gr.Markdown("", latex_delimiters=LATEX, elem_id="about")
    text = about_markdown(world)
    page.lazy(about, lambda: text)
