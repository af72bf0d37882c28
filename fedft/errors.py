"""The one error type a user should ever see from bad input.

Every check that rejects user input raises :class:`FedftError` with the field
at fault and the fix; the CLI prints it on one line and exits with code 2.
"""

from __future__ import annotations

EXIT_BAD_INPUT = 2


class FedftError(ValueError):
    """Bad user input (config, checkpoint, data file): names the field and the fix."""

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.field}: {self.problem}"
        if self.fix:
            text += f" Fix: {self.fix}"
        return " ".join(text.split())
