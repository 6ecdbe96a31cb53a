"""Models a user writes in TOML: families, parameter strings, closed forms, reports, plots.

- families: distribution families and their closed-form expectations, entropies and KLs
- model_expr: the parameter strings of a model file, read by a grammar
- model: the model, its data and its closed-form ELBO, log evidence and KL
- model_report, instantiate, plot: ``symelbo model``, ``derive --model``, ``symelbo plot``
"""
