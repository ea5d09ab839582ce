"""The seed's grader names, kept importable from here: the grader lives in
`aimo3_recipe.grader` (see that package and docs/verifier.md)."""

from aimo3_recipe import grader as _grader
from aimo3_recipe.grader import *  # noqa: F403  (exactly the grader's public names)

__all__ = list(_grader.__all__)
