"""Event rules of a request: those of ``seqbert prepare`` (timestamps, event types and their recorded aliases)."""

import json
import time
from datetime import datetime, timezone
from pathlib import Path

from .errors import _RequestError


def _utc(seconds: float) -> str:
    try:
        return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return "out of range"


class EventRules:
    """Checks one request's events with the rules of ``seqbert prepare``: timestamps (unix seconds, not negative,
    not before 1990, at most a day in the future) and event types through the aliases prepare applied to the
    model's data (``split_protocol.json``: defaults, ``--dataset-format``, ``--event-alias``; case-insensitive).

    Args:
        event_types: the tokenizer's event types; aliases: raw name → canonical type (stripped, lower-case).
    """

    def __init__(self, event_types: list[str], aliases: dict[str, str]):
        from ..data.canonical import timestamp_problem

        self._problem = timestamp_problem
        self.event_types = list(event_types)
        known = set(self.event_types)
        self.aliases = {raw: canonical for raw, canonical in aliases.items() if canonical in known}
        self.aliases.update({name: name for name in self.event_types})
        self._exact = {name: name for name in self.event_types}

    @classmethod
    def for_folder(cls, folder: str | Path, event_types: list[str]) -> "EventRules":
        from ..data.canonical import recorded_event_aliases

        protocol_file = Path(folder) / "split_protocol.json"
        protocol = json.loads(protocol_file.read_text(encoding="utf-8")) if protocol_file.is_file() else None
        return cls(event_types, recorded_event_aliases(protocol))

    def accepted_names(self) -> list[str]:
        """Every accepted event-type name (canonical types first, then the aliases, sorted)."""
        return self.event_types + sorted(set(self.aliases) - set(self.event_types))

    def timestamp_error(self, value: int, loc: list, now: float) -> dict | None:
        """The 422 detail of a timestamp that breaks prepare's rule, else ``None``."""
        problem = self._problem(value, now)
        if problem is None:
            return None
        hint = ""
        if self._problem(value // 1000, now) is None:
            hint = " It looks like milliseconds: divide by 1000."
        return {
            "loc": loc,
            "msg": f"timestamp {value} {problem} (read as unix seconds: {_utc(value)}); `seqbert prepare` rejects it "
            f"too. Send unix seconds from 1990-01-01 to 1 day from now.{hint}",
            "type": "timestamp_out_of_range",
        }

    def check(self, events: list, now: float | None = None) -> list[dict]:
        """Raw events (the request's pydantic models) → dicts with canonical event types; raises
        :class:`_RequestError` (422) listing the bad fields."""
        now = time.time() if now is None else now
        exact, aliases = self._exact, self.aliases
        out, unknown, empty = [], {}, []
        for index, event in enumerate(events):
            raw, item = event.event_type, event.item_id
            event_type = exact.get(raw) or aliases.get(raw.strip().lower())
            if event_type is None:
                unknown.setdefault(raw, index)
            if type(item) is not str:
                item = str(item)
            elif not item:
                empty.append(index)
            out.append({"item_id": item, "event_type": event_type, "timestamp": event.timestamp})
        errors = [
            {"loc": ["body", "events", index, "item_id"], "type": "missing",
             "msg": "item_id is empty (`seqbert prepare` drops events without an item)."}
            for index in empty
        ]  # fmt: skip
        times = [event["timestamp"] for event in out]
        # The rule is a range: when the earliest and the latest timestamps pass, all do.
        if times and (self._problem(min(times), now) or self._problem(max(times), now)):
            for index, value in enumerate(times):
                error = self.timestamp_error(value, ["body", "events", index, "timestamp"], now)
                if error is not None:
                    errors.append(error)
        if unknown:
            names = list(unknown)
            errors.insert(0, {
                "loc": ["body", "events", unknown[names[0]], "event_type"],
                "type": "unknown_event_type",
                "msg": f"Unknown event types {names[:10]}; this model knows {self.event_types} and accepts these "
                f"names for them (case-insensitive, as `seqbert prepare` maps them): {self.accepted_names()}.",
            })  # fmt: skip
        if errors:
            raise _RequestError(422, errors[:20])
        return out


__all__ = ["EventRules"]
