"""Errors shown to users without a traceback. Kept free of heavy imports (torch, transformers), so tools such
as `rlhfkit label` start fast and run on machines without them."""


class StageError(RuntimeError):
    """A user-facing failure of a stage (bad input, non-finite loss, ...): printed without a traceback."""
