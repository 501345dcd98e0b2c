"""Evaluation of trained models, above training (it loads checkpoints and workbenches; training never
imports it): retrieval numbers per query group (:mod:`~ccr_core.eval.retrieval`), noise detectors on the
training pairs (:mod:`~ccr_core.eval.detectors`), results tables (:mod:`~ccr_core.eval.tables`), standard
benchmarks from their upstream files (:mod:`~ccr_core.eval.benchmark`) and the demo world's free-typed
queries (:mod:`~ccr_core.eval.free_queries`). The metrics themselves are :mod:`ccr_core.metrics`."""
