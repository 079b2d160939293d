"""The one exception type for bad event data.

Every problem with user input (a missing file, a wrong delimiter, an unparsable timestamp, an
unknown event type...) is raised as :class:`EventDataError`. Its message names *where* the
problem is (file, row, column), *what* the offending value is, and *how to fix it* (the Python
argument or CLI option to use)::

    events.csv, row 17 (line 18), column 'timestamp': value 'abc' is not a timestamp (unix
    seconds, unix milliseconds or ISO-8601). Fix: correct the value, or pass
    bad_timestamps='drop' (CLI: --bad-timestamps drop) to drop such rows.

The parts are also available as attributes, so callers (the CLI, tests) can use them directly.
"""

from __future__ import annotations

from os import PathLike
from typing import Any

_MAX_VALUE_CHARS = 80


def show_value(value: Any, max_chars: int = _MAX_VALUE_CHARS) -> str:
    """A short, quoted rendering of an offending value for messages: ``'abc'``, ``b'\\xff'``, ``42``."""
    if isinstance(value, str):
        text = repr(value if len(value) <= max_chars else value[:max_chars] + "...")
    elif isinstance(value, (bytes, bytearray)):
        text = repr(bytes(value[:max_chars])) + ("..." if len(value) > max_chars else "")
    else:
        text = repr(value)
        if len(text) > max_chars:
            text = text[:max_chars] + "..."
    return text


class EventDataError(ValueError):
    """Bad event data, with the file, row, column, value and fix that locate and resolve it.

    Args:
        message: what is wrong. When ``value`` is given, the message reads as a predicate of the
            value: ``EventDataError("is not a timestamp", value="abc")`` renders as
            ``value 'abc' is not a timestamp``.
        path: the input file.
        row: 1-based data row (the first row after any header is row 1).
        line: 1-based line number in a text file, where it differs from ``row`` (header lines).
        column: the column, as named in the file.
        value: the offending value.
        fix: what to do about it: the argument or CLI option to use.
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | PathLike[str] | None = None,
        row: int | None = None,
        line: int | None = None,
        column: str | None = None,
        value: Any = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.row = row
        self.line = line
        self.column = column
        self.value = value
        self.fix = fix
        super().__init__(self._compose())

    def _compose(self) -> str:
        where: list[str] = []
        if self.path is not None:
            where.append(str(self.path))
        if self.row is not None:
            loc = f"row {self.row}"
            if self.line is not None and self.line != self.row:
                loc += f" (line {self.line})"
            where.append(loc)
        elif self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        body = self.message.strip()
        if self.value is not None:
            body = f"value {show_value(self.value)} {body}"
        if not body.endswith((".", "?", "!")):
            body += "."
        text = f"{', '.join(where)}: {body}" if where else body
        if self.fix:
            text += f" Fix: {self.fix.strip()}"
        return text

    def __str__(self) -> str:
        return self._compose()

    def __reduce__(self):  # keep the attributes through pickling (multiprocessing, datasets.map(num_proc=...))
        return (
            _rebuild,
            (
                type(self),
                self.message,
                {
                    "path": self.path,
                    "row": self.row,
                    "line": self.line,
                    "column": self.column,
                    "value": self.value,
                    "fix": self.fix,
                },
            ),
        )


def _rebuild(cls: type[EventDataError], message: str, kwargs: dict[str, Any]) -> EventDataError:
    return cls(message, **kwargs)


__all__ = ["EventDataError", "show_value"]
