"""Errors that users can fix: each names where it happened, what is wrong and how to fix it.

The CLI prints a :class:`CodesignError` as one line and exits with code 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

__all__ = ["CodesignError", "SpecError", "RuleError", "UnknownNameError"]


class CodesignError(Exception):
    """A problem in the user's input, reported as one line.

    Parameters
    ----------
    message
        What is wrong, with the value received.
    file
        The file the problem is in, if any.
    key
        The dotted key path inside that file (``task.n_inputs``), if any.
    fix
        What to do about it.
    """

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 fix: str | None = None) -> None:
        self.message = message
        self.file = file
        self.key = key
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = ": ".join(part for part in (self.file, self.key) if part)
        text = f"{where}: {self.message}" if where else self.message
        if self.fix:
            text += f" (fix: {self.fix})"
        return text


class SpecError(CodesignError):
    """A study, target or rule file that does not follow its schema."""


class RuleError(CodesignError):
    """A plasticity rule that cannot be built or run as asked."""


class UnknownNameError(CodesignError):
    """A name that is not in a registry; the message lists the known ones."""

    def __init__(self, kind: str, name: str, known: list[str] | tuple[str, ...], **where: str | None) -> None:
        super().__init__(
            f"unknown {kind} {name!r}",
            fix=f"use one of: {', '.join(sorted(known))}",
            **where,  # type: ignore[arg-type]
        )
