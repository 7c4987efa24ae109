"""The sympy derivations, one concept per module; the registry is :mod:`theory.derive`."""
