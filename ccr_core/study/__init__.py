"""The study: the equal-budget comparison of methods (docs/methods.md §8) as data.

- :mod:`~ccr_core.study.grid`: what runs (worlds, settings, methods, noise, seeds; ablations; the fine-tuned setting);
- :mod:`~ccr_core.study.runner`: training, scoring at the end of the budget, collecting the records;
- :mod:`~ccr_core.study.stats`: intervals, paired differences, verdicts, Holm;
- :mod:`~ccr_core.study.report`, :mod:`~ccr_core.study.variants`, :mod:`~ccr_core.study.shipped`: RESULTS.md's sections;
- :mod:`~ccr_core.study.plots`: the figures.

``python -m ccr_core.experiments`` is the command line over it.
"""
