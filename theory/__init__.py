"""theory: the closed forms of the SGD and sign-update (Adam) learning-rate laws.

Numeric API (stable): :mod:`theory.sgd`, :mod:`theory.sign`, :mod:`theory.efficiency`.
Symbolic derivations (sympy): :mod:`theory.derive`. ``python -m theory check`` re-derives
everything and checks the numeric functions against the derived expressions.
"""

from theory import efficiency, sgd, sign

__all__ = ["efficiency", "sgd", "sign"]
