"""Loss functions of the CCR methods (baseline, NRCCR, CL2CM, UML, 1-to-K) as pure functions over
tensors (:mod:`~.contrastive`, :mod:`~.distillation`, :mod:`~.evidential`; every name importable from here), each with a reference test in ``tests/test_losses.py``; formulas follow docs/methods.md §3-7.

Conventions: embeddings are L2-normalised, so ``a @ b.T`` is a cosine-similarity matrix; in a batch,
row ``i`` of every view belongs to the same image (the positive is the diagonal) unless a function
says otherwise. ``temperature`` may be a float or a 0-d tensor (a learnable one).
"""
from ccr_core.methods.losses.contrastive import (  # noqa: F401
    clamp_temperature,
    info_nce,
    info_nce_per_sample,
    LearnableTemperature,
    one_to_k_contrastive,
    TEMPERATURE_MAX,
    TEMPERATURE_MIN,
    triplet_hardest_negative,
)
from ccr_core.methods.losses.distillation import (  # noqa: F401
    discriminator_loss,
    encoder_adversarial_loss,
    feature_view_distillation,
    kl_distillation,
    relational_distillation,
    similarity_view_distillation,
    sinkhorn,
    soft_cross_entropy_distillation,
    uniform_marginals,
    word_ot_loss,
)
from ccr_core.methods.losses.evidential import (  # noqa: F401
    adaptive_mutual_learning_loss,
    certainty_softened_labels,
    clean_pair_labels,
    combine_view_uncertainty,
    decl_noise_scores,
    dirichlet_fisher_logdet,
    dirichlet_kl_to_uniform,
    dirichlet_uncertainty,
    edl_mse_loss,
    evidence_from_similarity,
    fisher_edl_loss,
)

__all__ = ["clamp_temperature", "info_nce", "info_nce_per_sample", "LearnableTemperature", "one_to_k_contrastive", "TEMPERATURE_MAX", "TEMPERATURE_MIN", "triplet_hardest_negative", "discriminator_loss", "encoder_adversarial_loss", "feature_view_distillation", "kl_distillation", "relational_distillation", "similarity_view_distillation", "sinkhorn", "soft_cross_entropy_distillation", "uniform_marginals", "word_ot_loss", "adaptive_mutual_learning_loss", "certainty_softened_labels", "clean_pair_labels", "combine_view_uncertainty", "decl_noise_scores", "dirichlet_fisher_logdet", "dirichlet_kl_to_uniform", "dirichlet_uncertainty", "edl_mse_loss", "evidence_from_similarity", "fisher_edl_loss"]
