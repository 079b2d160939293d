"""The canonical event schema every reader produces and every later step consumes.

One row is one behavior event. Ids are strings (external ids exactly as the user logged them),
timestamps are integer unix seconds (UTC), event types are one of :data:`EVENT_TYPES`.
"""

from __future__ import annotations

import pyarrow as pa

EVENT_TYPES: tuple[str, ...] = ("view", "click", "search", "cart", "fav", "purchase")
"""Canonical behavior types, in funnel order. Their order fixes the tokenizer's behavior ids."""

REQUIRED_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "event_type", "timestamp")
OPTIONAL_COLUMNS: tuple[str, ...] = ("category", "price", "query", "session_id", "quantity")

ARROW_TYPES: dict[str, pa.DataType] = {
    "user_id": pa.string(),
    "item_id": pa.string(),
    "event_type": pa.string(),
    "timestamp": pa.int64(),
    "category": pa.string(),
    "price": pa.float64(),
    "query": pa.string(),
    "session_id": pa.string(),
    "quantity": pa.int64(),
}

DEFAULT_EVENT_ALIASES: dict[str, str] = {
    # Taobao UserBehavior, RetailRocket, YooChoose, OTTO and common log vocabularies.
    "pv": "view",
    "view": "view",
    "views": "view",
    "clicks": "click",
    "click": "click",
    "search": "search",
    "cart": "cart",
    "carts": "cart",
    "addtocart": "cart",
    "add_to_cart": "cart",
    "fav": "fav",
    "favorite": "fav",
    "favourite": "fav",
    "wishlist": "fav",
    "buy": "purchase",
    "buys": "purchase",
    "purchase": "purchase",
    "transaction": "purchase",
    "order": "purchase",
    "orders": "purchase",
}


def canonical_schema(columns: list[str] | tuple[str, ...]) -> pa.Schema:
    """The Arrow schema for the given canonical columns, in canonical order."""
    ordered = [c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if c in columns]
    return pa.schema([(c, ARROW_TYPES[c]) for c in ordered])


__all__ = [
    "ARROW_TYPES",
    "DEFAULT_EVENT_ALIASES",
    "EVENT_TYPES",
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "canonical_schema",
]
