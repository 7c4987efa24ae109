"""theory: the closed forms of the SGD and sign-update (Adam) learning-rate laws.

Numeric API (stable): :mod:`theory.sgd`, :mod:`theory.sign`, :mod:`theory.efficiency`;
also :mod:`theory.lemma1` (any update V), :mod:`theory.su` (Su's mean-field variant) and
:mod:`theory.correlated` (exact sign moments under correlated Gaussian noise).
Symbolic derivations (sympy, imported on demand): :mod:`theory.derive`.
``python -m theory check`` re-derives everything and checks the numeric functions against the
derived expressions; ``python -m theory tex --out DIR`` writes them as Markdown + LaTeX.
"""

from theory import correlated, efficiency, lemma1, sgd, sign, su

__all__ = ["correlated", "efficiency", "lemma1", "sgd", "sign", "su"]
