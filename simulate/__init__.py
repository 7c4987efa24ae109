"""simulate: quadratic models, one-step and multi-step Monte Carlo, checked against theory/.

Library (pure: arrays and dataclasses in, tables out; no printing, argv or files)::

    from simulate import problems, surge, train, momentum, assumptions, plots

    p = problems.make("surge", seed=0)   # frozen Problem: a kernels.QuadraticProblem + name
    rows, summary = surge.run_surge(p, batch_sizes, n_samples, seed=0, backend="auto")
    res = train.run_grid(p, batch_sizes, lrs, n_seeds, train.TrainConfig(...), seed=0)
    cells, best, fits, summary = train.analyse(p, res, config)
    rows, summary = momentum.run_momentum(problems.diagonal(0), B, lrs, n_seeds, betas,
                                          target=0.01, max_steps=3000)
    rows, summary = assumptions.run_assumptions(rhos, n_examples, d=64, ...)
    plots.plot_surge(table, ax=None); plots.plot_heatmap(cells, best, ...)   # tables only

Modelling choices (documented where they are made):

* Dense Hessians are stored exactly in the kernel's diag(h) + U Uᵀ form with a full-rank U
  (``problems.dense``: h = min λ, U = Q √(Λ − min λ)), so the kernel needs no approximation.
* Multi-step noise is constant per example (``noise="constant"``, McCandlish's model: B_noise
  grows as the gradient shrinks) or proportional to the loss (``noise="scaled"``: with H ∝ I
  the noise scale is then constant and the steps–examples law is known exactly).
* Finite datasets are simulated here (not by the kernel): batches are B of N fixed examples
  drawn without replacement, compared with the finite-population-corrected laws.

I/O (run folders, the resumable chunk store of ``simulate train``) lives in the app layer:
:mod:`surgelab.cmd_simulate` and :mod:`surgelab.chunks`.
"""
