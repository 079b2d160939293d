"""Prepare a log with Apache Spark: the prepared folder of ``seqbert prepare``, as parquet shards.

:func:`prepare_spark` takes a PySpark DataFrame of canonical events (the columns of
:mod:`seqbert.data.schema`, optionally ``row_index`` and the reader's drop markers ``_bad_timestamp``
/ ``_unknown_event``) and writes the folder :func:`seqbert.prepare.prepare_events` builds, with the
same rows in the same order, the same drop report, statistics, protocol and tokenizer. Every step
on events is a DataFrame operation (window functions, group-bys, SQL array functions): no Python
UDF, so it runs wherever the DataFrame lives (local mode, YARN, Kubernetes, Databricks). The driver
only builds the vocabulary from the train split's item counts (computed in Spark) and writes the
json files.

Layout (``PreparedData.load`` reads it)::

    FOLDER/dataset/{train,validation,test}/part-NNNNN.parquet
    FOLDER/sequences/part-NNNNN.parquet
    FOLDER/tokenizer/
    FOLDER/protocol.json  statistics.json  drop_report.json

The parquet columns and Arrow types are those of the datasets ``seqbert prepare`` saves; the part
files, concatenated in name order, hold the rows in ``seqbert prepare``'s order (users by id).
``protocol.json`` has prepare's keys plus ``"layout": "parquet"``, ``"engine": "spark"`` and
``"shards"`` (per split, the files and their rows).

Row order. Ties in time within a user, and which of two exact duplicates is kept, are decided by
``row_index`` as in ``seqbert prepare``. Without a ``row_index`` column the DataFrame's own order
(``monotonically_increasing_id``) is used: the file order for one input file; pass ``row_index``
when several files or a shuffled DataFrame make that order meaningless.

Every option of :class:`~seqbert.prepare.PrepareOptions` is supported but extra ``clean`` keyword
arguments (``item_support``, ``core``: the inputs of the partitioned path); a ``ValueError`` names them.
``k_core=True`` runs one small Spark job per pass (and a local checkpoint of the events).
"""

from __future__ import annotations

import bisect
import json
import logging
import math
import shutil
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..prepared import JSON_FILES
from .canonical import BAD_TIMESTAMP_MARKER, ROW_INDEX, UNKNOWN_EVENT_MARKER
from .cleaning import DROP_REASONS, DropReport
from .schema import EVENT_TYPES, OPTIONAL_COLUMNS, REQUIRED_COLUMNS
from .splits import LOO_TARGETS, PURCHASE

if TYPE_CHECKING:  # pyspark is an optional extra
    from pyspark.sql import Column, DataFrame

    from ..prepare import PrepareOptions

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
ROWS_PER_SHARD = 100_000
"""Default rows (users) per parquet part file."""

_SPARK_TYPES = {
    "user_id": "string", "item_id": "string", "event_type": "string", "timestamp": "bigint", "category": "string",
    "price": "double", "query": "string", "session_id": "string", "quantity": "bigint",
}  # fmt: skip
# Event column → (struct field in the per-user event list, output list column), in output order.
_LIST_COLUMNS = {
    "item_id": "item_ids", "event_type": "event_types", "timestamp": "timestamps", "category": "categories",
    "price": "prices", "session_index": "session_index",
}  # fmt: skip
_TARGETS = {"item_id": "target_item_id", "event_type": "target_event_type", "timestamp": "target_timestamp"}


def _functions() -> tuple[Any, Any]:
    try:
        from pyspark.sql import Window
        from pyspark.sql import functions as F
    except ImportError as e:  # pragma: no cover - depends on the extra
        raise ImportError("seqbert's Spark path needs pyspark: pip install 'seqbert[spark]'") from e
    return F, Window


def _stage(name: str) -> AbstractContextManager[None]:
    """prepare's stage logging (start, wall time), labelled ``prepare-spark``."""
    from ..prepare import _stage as stage

    return stage(name, label="prepare-spark")


# ------------------------------------------------------------------------------------- options
UNSUPPORTED = ("clean",)
"""PrepareOptions the Spark path refuses (it raises instead of silently differing)."""


def check_spark_options(options: PrepareOptions) -> None:
    """Raise ``ValueError`` naming every option of ``options`` the Spark path does not support, and
    run prepare's own checks (tokenizer options, split and target names)."""
    from ..prepare import check_tokenizer_options

    check_tokenizer_options(options)
    refused = []
    if options.clean:
        refused.append(f"clean={options.clean!r} (extra clean_events arguments)")
    if refused:
        raise ValueError("prepare_spark does not support: " + "; ".join(refused) + ".")
    if options.split not in ("leave_one_out", "temporal"):
        raise ValueError(f"Unknown split {options.split!r}; use 'leave_one_out' or 'temporal'.")
    if options.loo_target not in LOO_TARGETS:
        raise ValueError(f"Unknown loo_target {options.loo_target!r}; use one of {', '.join(LOO_TARGETS)}.")
    if options.split != "leave_one_out" and options.loo_target != "last_event":
        raise ValueError(f"loo_target={options.loo_target!r} only applies to split='leave_one_out'.")
    for name in ("min_user_events", "min_item_support"):
        if int(getattr(options, name)) < 0:
            raise ValueError(f"{name} must be >= 0, got {getattr(options, name)}")
    for name in ("max_events_per_user", "max_events_per_minute", "max_events_per_hour"):
        value = getattr(options, name)
        if value is not None and int(value) < 1:
            raise ValueError(f"{name} must be >= 1 or None, got {value}")
    if options.min_history < 0:
        raise ValueError(f"min_history must be >= 0, got {options.min_history}.")


# ------------------------------------------------------------------------- exact numpy quantiles
def numpy_quantile(n: int, q: float, value_at: Callable[[int], int]) -> np.float64:
    """``np.quantile(a, q)`` (method ``linear``) of a sorted integer sample of size ``n`` whose
    ``k``-th smallest value is ``value_at(k)``, with numpy's own floating-point steps (the same
    bits: ``temporal_cutoffs`` truncates it to an int and the statistics print it)."""
    virtual = (n - 1) * np.asanyarray(q, dtype=np.float64)
    previous = np.floor(virtual)
    if virtual >= n - 1:
        low = high = n - 1
        gamma = virtual - np.float64(-1)
    else:
        low = 0 if virtual < 0 else int(previous)
        high = 0 if virtual < 0 else low + 1
        gamma = virtual - np.float64(low)
    a, b = np.int64(value_at(low)), np.int64(value_at(high))
    t = float(gamma)
    diff = b - a
    if t >= 0.5:
        return np.float64(np.subtract(b, diff * (1 - t), dtype=np.float64))
    return np.float64(np.add(a, diff * t))


def _sorted_lookup(value_counts: list[tuple[int, int]]) -> Callable[[int], int]:
    """``value_at(k)`` of the sample with these (value, count) pairs."""
    pairs = sorted(value_counts)
    ends = np.cumsum([count for _, count in pairs]).tolist()
    return lambda k: pairs[bisect.bisect_right(ends, k)][0]


def _order_statistics(values: DataFrame, column: str, ranks: list[int], n: int, low: int, high: int) -> dict[int, int]:
    """The ``k``-th smallest non-null value of the integer ``column`` for each ``k`` of ``ranks``, exactly,
    in two small jobs: a histogram of about 65k buckets, then the value counts of the needed buckets."""
    F, _ = _functions()
    width = max(1, -(-(high - low + 1) // 65_536))
    bucket = F.floor((F.col(column) - F.lit(low)) / F.lit(width)).cast("bigint")
    histogram = sorted((int(r[0]), int(r[1])) for r in values.groupBy(bucket.alias("b")).count().collect())
    ends = np.cumsum([count for _, count in histogram]).tolist()
    needed = {k: bisect.bisect_right(ends, k) for k in ranks}
    wanted = sorted({histogram[i][0] for i in needed.values()})
    rows = values.where(bucket.isin(wanted)).groupBy(F.col(column).alias("v")).count().collect()
    by_bucket: dict[int, list[tuple[int, int]]] = {}
    for row in rows:
        by_bucket.setdefault((int(row["v"]) - low) // width, []).append((int(row["v"]), int(row["count"])))
    out = {}
    for k, index in needed.items():
        before = ends[index - 1] if index else 0
        out[k] = _sorted_lookup(by_bucket[histogram[index][0]])(k - before)
    return out


def temporal_cutoffs_spark(events: DataFrame, options: PrepareOptions) -> tuple[int, int]:
    """:func:`seqbert.prepare.temporal_cutoffs` of a canonical events DataFrame, to the bit."""
    if options.test_start is not None:
        test_start = options.test_start
        validation_start = options.validation_start if options.validation_start is not None else test_start - 1
        return int(validation_start), int(test_start)
    F, _ = _functions()
    timestamps = events.select(F.col("timestamp").cast("bigint").alias("t")).where(F.col("t").isNotNull())
    summary = timestamps.agg(F.count("*").alias("n"), F.min("t").alias("lo"), F.max("t").alias("hi")).first()
    n = int(summary["n"])
    if n == 0:
        raise ValueError("No event has a valid timestamp: the temporal cutoffs cannot be computed.")
    quantiles = (1.0 - options.test_fraction, 1.0 - options.test_fraction - options.validation_fraction)
    ranks = set()
    for q in quantiles:
        virtual = (n - 1) * np.float64(q)
        first = 0 if virtual < 0 else min(int(np.floor(virtual)), n - 1)
        ranks |= {first, min(first + 1, n - 1)}
    stats = _order_statistics(timestamps, "t", sorted(ranks), n, int(summary["lo"]), int(summary["hi"]))
    test_start, validation_start = (int(numpy_quantile(n, q, stats.__getitem__)) for q in quantiles)
    return validation_start, test_start


# -------------------------------------------------------------------------------------- cleaning
def canonical_events(events: DataFrame) -> tuple[DataFrame, list[str]]:
    """The canonical columns cast to their types, ``row_index`` (the DataFrame order when absent) and
    the two drop markers (false when absent); and the optional columns present."""
    F, _ = _functions()
    missing = [c for c in REQUIRED_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"events lack the required column(s) {missing}; they have {events.columns}")
    optional = [c for c in OPTIONAL_COLUMNS if c in events.columns]
    columns = [F.col(c).cast(_SPARK_TYPES[c]).alias(c) for c in (*REQUIRED_COLUMNS, *optional)]
    index = F.col(ROW_INDEX).cast("bigint") if ROW_INDEX in events.columns else F.monotonically_increasing_id()
    columns.append(index.alias(ROW_INDEX))
    for marker in (BAD_TIMESTAMP_MARKER, UNKNOWN_EVENT_MARKER):
        value = F.coalesce(F.col(marker).cast("boolean"), F.lit(False)) if marker in events.columns else F.lit(False)
        columns.append(value.alias(marker))
    return events.select(*columns), optional


def _flag_drops(events: DataFrame, options: PrepareOptions, count_before: int | None) -> DataFrame:
    """``events`` with a ``reason`` column: the :data:`DROP_REASONS` entry that drops the row, null
    when kept. The rules of :func:`seqbert.data.cleaning.clean_events`, applied in its order."""
    F, Window = _functions()
    reason, user, item = F.col("reason"), F.col("user_id"), F.col("item_id")
    bad, unknown = F.col(BAD_TIMESTAMP_MARKER), F.col(UNKNOWN_EVENT_MARKER)
    missing = (
        user.isNull()
        | item.isNull()
        | (F.col("event_type").isNull() & ~unknown)
        | (F.col("timestamp").isNull() & ~bad)
    )
    df = events.withColumn(
        "reason",
        F.when(missing, "missing_field").when(bad, "bad_timestamp").when(unknown, "unknown_event_type"),
    )
    by_user, by_item = Window.partitionBy("user_id"), Window.partitionBy("item_id")

    def drop(name: str, condition: Column) -> DataFrame:
        return df.withColumn(
            "reason", F.when(reason.isNull() & F.coalesce(condition, F.lit(False)), name).otherwise(reason)
        )

    if options.deduplicate:
        # Kept rows first, equal (item, type, time) next to each other, the first row_index first: a row
        # is a duplicate when the row before it is kept and has the same keys (same user: the partition).
        order = Window.partitionBy("user_id").orderBy(
            reason.isNotNull(), "item_id", "event_type", "timestamp", ROW_INDEX
        )
        same = F.lit(True)
        for name in ("item_id", "event_type", "timestamp"):
            same = same & (F.lag(name).over(order) == F.col(name))
        df = drop("duplicate", F.lag(reason.isNull()).over(order) & same)

    early = F.lit(True) if count_before is None else F.col("timestamp") < F.lit(int(count_before))
    counted = (reason.isNull() & F.coalesce(early, F.lit(False))).cast("int")
    limits = [
        (window, int(limit))
        for window, limit in ((60, options.max_events_per_minute), (3600, options.max_events_per_hour))
        if limit is not None
    ]
    if options.max_events_per_user is not None or limits:
        bot = F.lit(False)
        if options.max_events_per_user is not None:
            bot = bot | (F.sum(counted).over(by_user) > int(options.max_events_per_user))
        if limits:
            # Counted rows first, in time order: more than `limit` counted events within `window`
            # seconds exactly when an event and the one `limit` places later are less than `window` apart.
            df = df.withColumn("_uncounted", counted == 0)  # a column, not an expression: one sort
            order = Window.partitionBy("user_id").orderBy("_uncounted", "timestamp")
            hit = F.lit(False)
            for window, limit in limits:
                hit = hit | (
                    (counted == 1)
                    & (F.lead(counted, limit).over(order) == 1)
                    & (F.lead("timestamp", limit).over(order) - F.col("timestamp") < window)
                )
            df = df.withColumn("_hit", hit.cast("int"))
            bot = bot | (F.max("_hit").over(by_user) == 1)
        df = drop("bot_user", bot)

    # With count_before, users / items without a counted event left after bot_user are not judged.
    judged = count_before is not None
    if judged and options.min_user_events > 1:  # users are judged before rare_item drops anything
        df = df.withColumn("_judged", F.sum(counted).over(by_user) > 0)
    iterate = options.k_core and options.min_item_support > 1
    if judged and iterate:  # so are items (a later pass can take a judged item's counted events to 0)
        df = df.withColumn("_judged_item", F.sum(counted).over(by_item) > 0)
    for k in range(1, 1_000_000):
        if iterate:
            df = df.withColumn("_kept_before", reason.isNull())
        if options.min_item_support > 1:
            support = F.sum(counted).over(by_item)
            judged_item = (F.col("_judged_item") if iterate else support > 0) if judged else F.lit(True)
            df = drop("rare_item", (support < int(options.min_item_support)) & judged_item)
        if options.min_user_events > 1:
            short = F.sum(counted).over(by_user) < int(options.min_user_events)
            df = drop("short_user", (short & F.col("_judged")) if judged else short)
        if not iterate:
            break
        # k_core: repeat until a pass drops nothing (one small job per pass; the checkpoint cuts the plan).
        df = df.localCheckpoint()
        if df.where(F.col("_kept_before") & reason.isNotNull()).isEmpty():
            logger.info("prepare-spark: k-core stable after %d pass(es)", k)
            break
    return df.drop("_hit", "_uncounted", "_judged", "_judged_item", "_kept_before")


def _flag_sequence_steps(
    df: DataFrame, options: PrepareOptions, count_before: int | None, sessions: bool
) -> DataFrame:
    """Kept rows get ``session_index`` (:func:`~seqbert.data.sequences.session_starts`' rules), ``pos``
    (the position in the user's time-ordered sequence) and, with ``collapse_repeated_views``, the flags
    ``collapsed`` (:func:`~seqbert.data.sequences.collapse_repeated_views`) and ``short`` (users that
    collapsing took below ``min_user_events``, :func:`~seqbert.data.sequences.drop_short_sequences`)."""
    F, Window = _functions()
    kept = F.col("reason").isNull()
    # Kept rows first, each user's in (timestamp, row_index) order (build_sequences' stable sort). The
    # order is on columns, not expressions: every window below then shares one sort of the events.
    df = df.withColumn("_dropped", ~kept)
    order = Window.partitionBy("user_id").orderBy("_dropped", "timestamp", ROW_INDEX)
    running = order.rowsBetween(Window.unboundedPreceding, Window.currentRow)
    before = order.rowsBetween(Window.unboundedPreceding, -1)
    first = F.lag("timestamp").over(order).isNull()
    gap = options.session_gap_seconds
    gap_break = (
        F.lit(False)
        if gap is None
        else F.coalesce(F.col("timestamp") - F.lag("timestamp").over(order) > gap, F.lit(False))
    )
    if sessions:
        # A logged id is authoritative; a null id continues the previous session unless it opens one
        # (user's first event or a gap): it then gets a fresh label. Forward fill, then compare.
        label = F.when(F.col("session_id").isNotNull(), F.concat(F.lit("s"), F.col("session_id"))).when(
            first | gap_break, F.concat(F.lit("u"), F.col(ROW_INDEX).cast("string"))
        )
        df = df.withColumn("_label", label)
        df = df.withColumn("_label", F.last("_label", ignorenulls=True).over(running))
        new_session = first | (F.col("_label") != F.lag("_label").over(order))
    else:
        new_session = first | gap_break
    df = df.withColumn("session_index", (F.sum(new_session.cast("int")).over(running) - 1).cast("int"))
    if not options.collapse_repeated_views:
        df = df.withColumn("pos", (F.row_number().over(order) - 1).cast("int"))
        return df.withColumn("collapsed", F.lit(False)).withColumn("short", F.lit(False)).drop("_label", "_dropped")
    same = (
        (F.col("event_type") == "view")
        & (F.lag("event_type").over(order) == "view")
        & (F.lag("item_id").over(order) == F.col("item_id"))
    )
    if options.collapse_within_session:
        same = same & (F.lag("session_index").over(order) == F.col("session_index"))
    df = df.withColumn("collapsed", kept & F.coalesce(same, F.lit(False)))
    left = kept & ~F.col("collapsed")
    # Dense session numbers over the rows left: a row starts a number when its session differs from
    # the last left row's before it.
    previous_session = F.last(F.when(left, F.col("session_index")), ignorenulls=True).over(before)
    opens = left & (previous_session.isNull() | (previous_session != F.col("session_index")))
    df = df.withColumn("_opens", opens.cast("int")).withColumn("_left", left.cast("int"))
    df = df.withColumn("session_index", (F.sum("_opens").over(running) - 1).cast("int"))
    df = df.withColumn("pos", (F.sum("_left").over(running) - 1).cast("int"))
    early = F.lit(1) if count_before is None else (F.col("timestamp") < F.lit(int(count_before))).cast("int")
    counted = F.sum(F.col("_left") * early).over(Window.partitionBy("user_id"))
    short = counted < int(options.min_user_events)
    if count_before is not None:
        short = short & (counted > 0)
    df = df.withColumn("short", left & short)
    return df.drop("_label", "_opens", "_left", "_dropped")


def _drop_report(counts: list[Any], source_name: str | None, collapse: bool) -> DropReport:
    by_reason: dict[str, int] = {}
    collapsed = short = 0
    total = 0
    for row in counts:
        count = int(row["count"])
        total += count
        if row["reason"] is not None:
            by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + count
        elif row["collapsed"]:
            collapsed += count
        elif row["short"]:
            short += count
    report = DropReport.start(total, source=source_name)
    for reason in DROP_REASONS:
        report.add(reason, by_reason.get(reason, 0))
    if collapse:
        report.add("collapsed_repeat_view", collapsed)
        report.add("short_user", short)
    report.check()
    return report


# ---------------------------------------------------------------------------------------- splits
def _with_splits(sequences: DataFrame, options: PrepareOptions, cutoffs: tuple[int, int] | None) -> DataFrame:
    """Per user: ``train_end`` and, for each evaluation split, ``{split}_row`` (the user has a row) and
    ``{split}_at`` (the target's position = the history's length), as :mod:`seqbert.data.splits`."""
    F, _ = _functions()
    n = F.size("ev")
    if cutoffs is not None:
        _, test_start = cutoffs
        v, t = F.col("_before_validation"), F.col("_before_test")
        target_time = F.get(F.col("ev"), v).getField("timestamp")
        df = sequences.select(
            "*",
            v.alias("train_end"),
            v.alias("validation_at"),
            t.alias("test_at"),
            ((v < n) & (target_time < test_start) & (v >= options.min_history)).alias("validation_row"),
            ((t < n) & (t >= options.min_history)).alias("test_row"),
            (v > 0).alias("train_row"),
        )
        return df
    if options.loo_target == "last_event":
        validated = n >= options.min_history + 2
        tested = validated
        test_at = F.when(tested, n - 1).otherwise(n)
        validation_at = F.when(validated, n - 2).otherwise(n)
    else:
        purchases = F.col("_purchases")  # positions, descending
        last, previous = F.get(purchases, 0), F.get(purchases, 1)
        tested = (F.size(purchases) >= 1) & (last >= options.min_history)
        validated = tested & (F.size(purchases) >= 2) & (previous >= options.min_history)
        test_at = F.when(tested, last).otherwise(n)
        validation_at = F.when(validated, previous).otherwise(n)
    df = sequences.select(
        "*",
        tested.alias("test_row"),
        F.coalesce(validated, F.lit(False)).alias("validation_row"),
        test_at.alias("test_at"),
        validation_at.alias("validation_at"),
        F.lit(True).alias("train_row"),
    )
    return df.withColumn(
        "train_end", F.when(F.col("validation_row"), F.col("validation_at")).otherwise(F.col("test_at"))
    )


def _split_frame(df: DataFrame, split: str, list_fields: list[str]) -> DataFrame:
    """The rows of ``split`` in the output columns: ``user_id``, the list columns and (evaluation) targets."""
    F, _ = _functions()
    length = F.col("train_end") if split == "train" else F.col(f"{split}_at")
    history = F.slice(F.col("ev"), 1, length)
    columns = [F.col("user_id")] + [history.getField(f).alias(_LIST_COLUMNS[f]) for f in list_fields]
    if split != "train":
        target = F.get(F.col("ev"), F.col(f"{split}_at"))
        columns += [target.getField(f).alias(name) for f, name in _TARGETS.items()]
    return df.where(F.col(f"{split}_row")).select(*columns)


def _summary(df: DataFrame, options: PrepareOptions, cutoffs: tuple[int, int] | None) -> dict[str, Any]:
    """Everything the protocol, the statistics and the vocabulary need, in one Spark job: the split
    totals, the distributions of the sequence lengths (all, train), events per type (all, train),
    the train split's (item, count) pairs and the number of items that are not in it."""
    F, _ = _functions()
    n = F.size("ev")

    def total(condition: Column, value: Column | int = 1) -> Column:
        return F.coalesce(F.sum(F.when(condition, value).otherwise(0)), F.lit(0)).cast("bigint")

    totals = {
        "users": F.count("*"),
        **{s: total(F.col(f"{s}_row")) for s in SPLITS},
        "train_events": total(F.lit(True), F.col("train_end")),
        "validation_history": total(F.col("validation_row"), F.col("validation_at")),
        "test_history": total(F.col("test_row"), F.col("test_at")),
        "after_test": total(F.col("test_row"), n - F.col("test_at") - 1),
    }
    if cutoffs is None and options.loo_target == "last_purchase":
        totals["no_purchase"] = total(F.size("_purchases") == 0)

    def rows(kind: str | Column, key: Column | None, a: Column, b: Column) -> Column:
        key = F.lit(None).cast("string") if key is None else key.cast("string")
        kind = F.lit(kind) if isinstance(kind, str) else kind
        return F.struct(kind.alias("kind"), key.alias("key"), a.cast("bigint").alias("a"), b.cast("bigint").alias("b"))

    parts = [
        df.agg(*(c.alias(name) for name, c in totals.items())).select(
            F.explode(F.array(*(rows("total", F.lit(name), F.col(name), F.lit(0)) for name in totals))).alias("r")
        ),
        # Sequence lengths: their distribution (few distinct values) gives numpy's percentiles exactly.
        df.select(
            F.explode(
                F.array(
                    rows("length_all", None, n, F.lit(1)),
                    rows("length_train", None, F.when(F.col("train_row"), F.col("train_end")), F.lit(1)),
                )
            ).alias("r")
        )
        .where(F.col("r.a").isNotNull())
        .groupBy("r.kind", "r.a")
        .count()
        .select(rows(F.col("kind"), None, F.col("a"), F.col("count")).alias("r")),
    ]
    events = df.select(F.col("train_end"), F.posexplode("ev").alias("p", "e")).select(
        F.col("e.item_id").alias("item_id"),
        F.col("e.event_type").alias("event_type"),
        (F.col("p") < F.col("train_end")).cast("int").alias("in_train"),
    )
    parts.append(
        events.groupBy("event_type")
        .agg(F.count("*").alias("all"), F.sum("in_train").alias("train"))
        .select(rows("type", F.col("event_type"), F.col("all"), F.col("train")).alias("r"))
    )
    items = events.where(F.col("item_id").isNotNull()).groupBy("item_id").agg(F.sum("in_train").alias("train"))
    parts.append(
        items.where(F.col("train") > 0).select(rows("item", F.col("item_id"), F.col("train"), F.lit(0)).alias("r"))
    )
    parts.append(
        items.where(F.col("train") == 0)
        .agg(F.count("*").alias("c"))
        .select(rows("unseen_items", None, F.col("c"), F.lit(0)).alias("r"))
    )
    union = parts[0]
    for part in parts[1:]:
        union = union.unionByName(part)
    summary: dict[str, Any] = {
        "total": {},
        "length_all": [],
        "length_train": [],
        "type": [],
        "item": [],
        "unseen_items": 0,
    }
    for row in union.select("r.*").collect():
        kind, key, a, b = row["kind"], row["key"], int(row["a"]), int(row["b"] or 0)
        if kind == "total":
            summary["total"][key] = a
        elif kind == "unseen_items":
            summary["unseen_items"] += a
        elif kind == "type":
            summary["type"].append((key, a, b))
        elif kind == "item":
            summary["item"].append((key, a))
        else:
            summary[kind].append((a, b))
    return summary


def _protocol(row: dict[str, int], options: PrepareOptions, cutoffs: tuple[int, int] | None) -> dict[str, Any]:
    """The split protocol of :func:`~seqbert.data.splits.leave_one_out` / ``temporal_split`` from the
    totals of :func:`_summary`."""
    rows = {s: int(row[s]) for s in SPLITS}
    if cutoffs is not None:
        return {
            "kind": "temporal",
            "validation_start": cutoffs[0],
            "test_start": cutoffs[1],
            "min_history": options.min_history,
            "targets": "first event of each user at or after the cutoff (validation: before test_start)",
            "users": int(row["users"]),
            "rows": rows,
        }
    if options.loo_target == "last_event":
        description = "validation = second-to-last event, test = last event of each user (any event type)"
    else:
        description = (
            "test = each user's last purchase, validation = the purchase before it (users with one purchase: "
            "test only); histories = every event strictly before the target; events after the last purchase "
            "are in no split"
        )
    protocol = {
        "kind": "leave_one_out",
        "target": options.loo_target,
        "min_history": options.min_history,
        "targets": description,
        "users": int(row["users"]),
        "users_evaluated": rows["test"],
        "users_validated": rows["validation"],
        "users_train_only": int(row["users"]) - rows["test"],
        "rows": rows,
        "events": {
            "train": int(row["train_events"]),
            "validation_history": int(row["validation_history"]),
            "test_history": int(row["test_history"]),
            "after_test_target_excluded": int(row["after_test"]),
        },
    }
    protocol["train_events"] = protocol["events"]["train"]
    if options.loo_target == "last_purchase":
        protocol["users_without_purchase"] = int(row["no_purchase"])
        if rows["test"] and not rows["validation"]:
            logger.warning(
                "leave_one_out(target='last_purchase'): no user has two purchases with enough history, so the "
                "validation split is empty (training that validates on it needs another protocol)."
            )
    return protocol


# ------------------------------------------------------------------------------------ statistics
def _statistics(summary: dict[str, Any]) -> dict[str, dict]:
    """``{"all": ..., "train": ...}`` as :func:`~seqbert.data.sequences.prefix_statistics` computes them,
    from :func:`_summary`."""
    train_items = len(summary["item"])
    statistics = {}
    for kind, column in (("all", 1), ("train", 2)):
        counts = summary[f"length_{kind}"]
        users = sum(c for _, c in counts)
        value_at = _sorted_lookup(counts)
        types = sorted((row[0], row[column]) for row in summary["type"] if row[0] is not None and row[column])
        statistics[kind] = {
            "users": users,
            "items": train_items + (summary["unseen_items"] if kind == "all" else 0),
            "events": sum(v * c for v, c in counts),
            "events_per_type": dict(types),
            "sequence_length": {
                f"p{q}": float(numpy_quantile(users, np.true_divide(q, 100), value_at)) if users else 0.0
                for q in (5, 25, 50, 75, 95, 100)
            },
        }
    return statistics


# ------------------------------------------------------------------------------------------ write
def write_shards(frame: DataFrame, folder: Path, rows: int, rows_per_shard: int) -> list[dict[str, Any]]:
    """``frame`` sorted by ``user_id`` as ``folder/part-NNNNN.parquet`` (range-partitioned parts, renamed in
    order; Spark's ``_SUCCESS`` and checksum files removed); the list of files and their rows."""
    shards = max(1, math.ceil(rows / max(1, rows_per_shard)))
    staging = folder.with_name(folder.name + ".spark-staging")
    shutil.rmtree(staging, ignore_errors=True)
    frame.repartitionByRange(shards, "user_id").sortWithinPartitions("user_id").write.mode("overwrite").parquet(
        str(staging)
    )
    parts = sorted(p for p in staging.iterdir() if p.name.startswith("part-") and p.name.endswith(".parquet"))
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    listing = []
    for k, part in enumerate(parts):
        target = folder / f"part-{k:05d}.parquet"
        part.rename(target)
        listing.append({"file": target.name, "rows": pq.ParquetFile(target).metadata.num_rows})
    shutil.rmtree(staging)
    return listing


# ------------------------------------------------------------------------------------ event types
def normalize_event_types(
    events: DataFrame, *, event_aliases: Mapping[str, str] | None = None, unknown_events: str = "error"
) -> DataFrame:
    """Map raw event names to the canonical types as :func:`~seqbert.data.readers.read_events` does (stripped,
    lower-cased, through :data:`~seqbert.data.schema.DEFAULT_EVENT_ALIASES` and ``event_aliases``; blank →
    null, counted as ``missing_field``). Unknown names: ``"error"`` raises (one Spark job looks for them),
    ``"drop"`` flags the rows with the ``_unknown_event`` marker (counted as ``unknown_event_type``)."""
    from .canonical import _merge_aliases

    F, _ = _functions()
    if unknown_events not in ("error", "drop"):
        raise ValueError(f"unknown_events must be 'error' or 'drop', got {unknown_events!r}")
    aliases = _merge_aliases(event_aliases)
    raw = F.lower(F.trim(F.col("event_type").cast("string")))
    mapped = F.lit(None).cast("string")
    for name, target in aliases.items():
        mapped = F.when(raw == name, target).otherwise(mapped)
    unknown = raw.isNotNull() & (raw != "") & mapped.isNull()
    if unknown_events == "error":
        found = events.where(unknown).groupBy("event_type").count().orderBy(F.desc("count")).limit(10).collect()
        if found:
            listed = ", ".join(f"{row['event_type']!r} ({row['count']:,} rows)" for row in found)
            raise ValueError(
                f"unknown event types: {listed}. Known types: {', '.join(EVENT_TYPES)}. Map them with "
                "event_aliases={'name': 'view'} (--event-alias name=view) or drop them with unknown_events='drop' "
                "(--unknown-events drop; counted as unknown_event_type)."
            )
    columns = {"event_type": mapped}
    if unknown_events == "drop":
        previous = F.col(UNKNOWN_EVENT_MARKER) if UNKNOWN_EVENT_MARKER in events.columns else F.lit(False)
        columns[UNKNOWN_EVENT_MARKER] = F.coalesce(previous, F.lit(False)) | F.coalesce(unknown, F.lit(False))
    return events.withColumns(columns)


# ------------------------------------------------------------------------------------------ main
def quiet_pandas_check() -> None:
    """Import ``pyspark.testing.utils`` (which pyspark imports lazily on the first SparkSession, for its
    numpy/pandas checks) with its "PySpark does not yet fully support pandas >= 3.0.0" FutureWarning silenced:
    the Spark path converts nothing to or from pandas, so the warning does not apply. Call before building a
    session."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
        import pyspark.testing.utils  # noqa: F401


def prepare_spark(
    events: DataFrame,
    options: PrepareOptions | None = None,
    output_dir: str | Path = "prepared",
    *,
    source_name: str = "spark",
    source: Mapping[str, Any] | None = None,
    rows_per_shard: int = ROWS_PER_SHARD,
) -> Path:
    """Clean → sequences (→ collapse repeated views) → split → tokenizer from the train split, in Spark.

    Writes the folder ``seqbert prepare`` writes (see the module doc for the parquet layout) and returns
    its path. ``events``: canonical events (see :mod:`seqbert.data.schema`), e.g.
    ``spark.read.parquet(...)`` of files in canonical columns. ``source_name`` and ``source`` are recorded
    as ``prepare`` records the input file. ``output_dir`` must be a path the driver and the executors
    both see (local disk in local mode, a shared mount on a cluster).
    """
    from pyspark import StorageLevel

    from ..prepare import PrepareOptions, run_protocol, vocabulary_from_counts

    quiet_pandas_check()
    F, _ = _functions()
    options = options or PrepareOptions()
    check_spark_options(options)
    output = Path(output_dir)
    events, optional = canonical_events(events)
    storage = StorageLevel.MEMORY_AND_DISK

    cutoffs = None
    if options.split == "temporal":
        with _stage("temporal cutoffs"):
            cutoffs = temporal_cutoffs_spark(events, options)
    count_before = cutoffs[0] if cutoffs is not None else None

    sessions = "session_id" in optional
    with _stage("clean, sessions"):
        flagged = _flag_drops(events, options, count_before)
        flagged = _flag_sequence_steps(flagged, options, count_before, sessions).persist(storage)
        counts = flagged.groupBy("reason", "collapsed", "short").count().collect()
        drop_report = _drop_report(counts, source_name, options.collapse_repeated_views)
    logger.info("drop report: %s", drop_report.one_line())
    if drop_report.kept_rows == 0:
        flagged.unpersist()
        raise ValueError("No events left to build sequences from (check the drop report).")

    fields = ["item_id", "event_type", "timestamp"] + [c for c in ("category", "price") if c in optional]
    fields.append("session_index")
    kept = flagged.where(F.col("reason").isNull() & ~F.col("collapsed") & ~F.col("short"))
    # One row per user: the events as a list of structs sorted by position (= (timestamp, row_index)).
    aggregates = [F.sort_array(F.collect_list(F.struct("pos", *fields))).alias("ev")]
    if cutoffs is not None:
        for name, cutoff in (("_before_validation", cutoffs[0]), ("_before_test", cutoffs[1])):
            aggregates.append(F.sum((F.col("timestamp") < cutoff).cast("int")).cast("int").alias(name))
    elif options.loo_target == "last_purchase":
        positions = F.collect_list(F.when(F.col("event_type") == PURCHASE, F.col("pos")))
        aggregates.append(F.sort_array(positions, asc=False).alias("_purchases"))
    sequences = kept.groupBy("user_id").agg(*aggregates)
    sequences = sequences.withColumn("ev", F.transform("ev", lambda e: e.dropFields("pos")))
    with _stage("sequences and splits"):
        table = _with_splits(sequences, options, cutoffs).persist(storage)
        summary = _summary(table, options, cutoffs)
        flagged.unpersist()
        protocol = _protocol(summary["total"], options, cutoffs)
    with _stage("tokenizer vocabulary (train split only) and statistics"):
        statistics = _statistics(summary)
        train_counts = summary["item"]
        counts = pa.StructArray.from_arrays(
            [pa.array([i for i, _ in train_counts], pa.string()), pa.array([c for _, c in train_counts], pa.int64())],
            names=["values", "counts"],
        )
        tokenizer = vocabulary_from_counts(counts, options)

    with _stage(f"write parquet shards to {output}"):
        output.mkdir(parents=True, exist_ok=True)
        (output / "dataset" / "dataset_dict.json").unlink(missing_ok=True)  # an Arrow layout written there before
        shards: dict[str, list[dict[str, Any]]] = {}
        sequence_columns = [F.col("user_id")] + [F.col("ev").getField(f).alias(_LIST_COLUMNS[f]) for f in fields]
        shards["sequences"] = write_shards(
            table.select(*sequence_columns), output / "sequences", protocol["users"], rows_per_shard
        )
        for split in SPLITS:
            shards[split] = write_shards(
                _split_frame(table, split, fields), output / "dataset" / split, protocol["rows"][split], rows_per_shard
            )
        table.unpersist()

    protocol.update(
        run_protocol(source_name, source, options, tokenizer, count_before),
        layout="parquet",
        engine="spark",
        shards={
            "sequences": shards["sequences"],
            **{f"dataset/{split}": shards[split] for split in SPLITS},
        },
    )
    tokenizer.save_pretrained(str(output / "tokenizer"))
    records = {"protocol": protocol, "statistics": statistics, "drop_report": drop_report.to_dict()}
    for name in JSON_FILES:
        (output / f"{name}.json").write_text(json.dumps(records[name], indent=2, default=str) + "\n")
    return output


# ------------------------------------------------------------------------------------------- cli
def build_parser() -> Any:
    """``python -m seqbert.data.spark``: the options of ``seqbert prepare`` that apply, plus Spark's."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m seqbert.data.spark",
        description="Prepare an event log with Spark: the folder `seqbert prepare` writes, as parquet shards. The "
        "input is read with spark.read (parquet, csv with a header, json, orc) and must hold the canonical columns "
        "(user_id, item_id, event_type, timestamp in unix seconds or a timestamp type, optional category, price, "
        "session_id, ...); event names go through the same aliases as `seqbert prepare`.",
    )
    parser.add_argument(
        "input", nargs="+", help="Files, folders or globs Spark can read (local paths, hdfs://, s3a://...)."
    )
    parser.add_argument("--output-dir", required=True, help="The prepared folder (a path the driver can write).")
    parser.add_argument(
        "--format", choices=("parquet", "csv", "json", "orc"), help="Input format (default: the extension)."
    )
    parser.add_argument(
        "--master", help="Spark master URL (default: Spark's, e.g. from spark-submit; local[*] when none)."
    )
    parser.add_argument("--driver-memory", help="spark.driver.memory (local mode: the heap of the one JVM).")
    parser.add_argument("--shuffle-partitions", type=int, help="spark.sql.shuffle.partitions.")
    parser.add_argument("--rows-per-shard", type=int, default=ROWS_PER_SHARD, help="Users per output parquet file.")
    parser.add_argument("--event-alias", action="append", default=[], metavar="RAW=TYPE", help="Map an event name.")
    parser.add_argument("--unknown-events", choices=("error", "drop"), default="error", help="Unknown event names.")
    parser.add_argument("--split", default="leave_one_out", choices=["leave_one_out", "temporal"])
    parser.add_argument("--validation-fraction", type=float, default=0.1)
    parser.add_argument("--test-fraction", type=float, default=0.1)
    parser.add_argument("--min-user-events", type=int, default=2)
    parser.add_argument("--min-item-support", type=int, default=1)
    parser.add_argument("--max-events-per-user", type=int)
    parser.add_argument("--max-events-per-minute", type=int)
    parser.add_argument("--max-events-per-hour", type=int)
    parser.add_argument("--k-core", action="store_true")
    parser.add_argument("--session-gap-minutes", type=float, default=30.0)
    parser.add_argument("--loo-target", default="last_event", choices=["last_event", "last_purchase"])
    parser.add_argument("--collapse-repeated-views", action="store_true")
    parser.add_argument("--collapse-across-sessions", action="store_true")
    parser.add_argument("--max-length", type=int, default=200)
    parser.add_argument("--vocab-min-count", type=int, default=1)
    parser.add_argument("--vocab-max-size", type=int)
    parser.add_argument("--unseen-items", default="unk", choices=["unk", "hash"])
    parser.add_argument("--num-hash-buckets", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pyspark.sql import SparkSession

    from ..prepare import PrepareOptions

    args = build_parser().parse_args(argv)
    options = PrepareOptions(
        split=args.split, validation_fraction=args.validation_fraction, test_fraction=args.test_fraction,
        min_user_events=args.min_user_events, min_item_support=args.min_item_support,
        max_events_per_user=args.max_events_per_user, max_events_per_minute=args.max_events_per_minute,
        max_events_per_hour=args.max_events_per_hour, k_core=args.k_core,
        session_gap_seconds=int(args.session_gap_minutes * 60), loo_target=args.loo_target,
        collapse_repeated_views=args.collapse_repeated_views, collapse_within_session=not args.collapse_across_sessions,
        max_length=args.max_length, vocab_min_count=args.vocab_min_count, vocab_max_size=args.vocab_max_size,
        unseen_items=args.unseen_items, num_hash_buckets=args.num_hash_buckets,
    )  # fmt: skip
    check_spark_options(options)
    aliases = dict(pair.split("=", 1) for pair in args.event_alias)
    quiet_pandas_check()
    builder = SparkSession.builder.appName("seqbert-prepare-spark")
    if args.master:
        builder = builder.master(args.master)
    for key, value in (
        ("spark.driver.memory", args.driver_memory),
        ("spark.sql.shuffle.partitions", args.shuffle_partitions),
    ):
        if value is not None:
            builder = builder.config(key, str(value))
    spark = builder.getOrCreate()
    fmt = args.format or Path(args.input[0].rstrip("/")).suffix.lstrip(".").split(".")[0] or "parquet"
    reader = spark.read.format({"jsonl": "json", "tsv": "csv"}.get(fmt, fmt))
    if fmt in ("csv", "tsv"):
        # Every field as a string (ids stay exactly as logged: no "007" → 7); canonical_events casts the rest.
        reader = reader.option("header", True).option("inferSchema", False)
        if fmt == "tsv":
            reader = reader.option("sep", "\t")
    events = normalize_event_types(reader.load(args.input), event_aliases=aliases, unknown_events=args.unknown_events)
    source = {"paths": list(args.input), "format": fmt}
    folder = prepare_spark(
        events, options, args.output_dir, source_name=Path(args.input[0].rstrip("/")).name, source=source,
        rows_per_shard=args.rows_per_shard,
    )  # fmt: skip
    report = DropReport.load_json(folder / "drop_report.json")
    protocol = json.loads((folder / "protocol.json").read_text())
    print(f"Wrote {folder}: rows {protocol['rows']}; vocabulary {protocol['vocabulary']['items']:,} items")
    print(report.format_table())
    return 0


__all__ = [
    "ROWS_PER_SHARD",
    "UNSUPPORTED",
    "build_parser",
    "canonical_events",
    "check_spark_options",
    "main",
    "normalize_event_types",
    "numpy_quantile",
    "prepare_spark",
    "quiet_pandas_check",
    "temporal_cutoffs_spark",
    "write_shards",
]


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    raise SystemExit(main())
