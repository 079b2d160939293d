"""The ``seqbert`` command: demo · prepare · pretrain · finetune · evaluate · recommend · embed · explain · export · serve · push.

``pretrain`` and ``finetune`` run in this process (one CPU / GPU); for several processes or GPUs,
run the same modules under ``accelerate launch -m seqbert.training.pretrain …`` (the demo does).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

logger = logging.getLogger("seqbert")


def _pairs(values: Sequence[str] | None, option: str) -> dict[str, str]:
    """``["a=b", …]`` → ``{"a": "b"}`` with a clear error for malformed entries."""
    pairs = {}
    for value in values or ():
        key, sep, mapped = value.partition("=")
        if not sep or not key or not mapped:
            raise SystemExit(f"{option} expects NAME=VALUE, got {value!r}.")
        pairs[key.strip()] = mapped.strip()
    return pairs


INPUT_HELP = (
    "a file, a folder of shards (read recursively; files starting with '.' or '_', such as _SUCCESS and .crc, "
    "are skipped; Hive folders key=value become columns), a glob (quote it: 'logs/dt=2024-05-*/*.parquet') or a "
    "URI (file://, s3://, gs://, abfs://, memory://, through fsspec); several may be given, read in order. All "
    "files of one input must have the same format"
)


def _input_arg(values: str | Sequence[str]) -> str | list[str]:
    """One input as given (a string), several as a list (:mod:`seqbert.data.shards`)."""
    if isinstance(values, str):
        return values
    return values[0] if len(values) == 1 else list(values)


def add_read_options(parser: argparse.ArgumentParser) -> None:
    """The options that say how to read an event log (format, column mapping, event names, timestamps).

    ``prepare``, ``recommend``, ``embed`` and ``explain`` share them; :func:`read_options_from_args` turns them into
    the ``read_options`` of :func:`seqbert.data.readers.read_events` (or a ``--dataset-format`` reader).
    """
    from .data.formats import FORMATS, describe_formats

    parser.add_argument("--format", dest="file_format", help="csv | tsv | parquet | jsonl (default: from the file suffix).")
    parser.add_argument(
        "--dataset-format", metavar="NAME", choices=list(FORMATS),
        help="Read the log in a public dataset's original format, which fixes the columns, delimiter and timestamp "
        "unit (--column, --column-names, --delimiter, --format, --timestamp-unit then do not apply): "
        + describe_formats() + " (default: none, a generic file).",
    )
    parser.add_argument(
        "--format-option", action="append", metavar="NAME=VALUE",
        help="An option of the --dataset-format reader; repeatable. Values are read as YAML scalars (numbers stay "
        "numbers). Examples: --format-option attribute_index=all (amazon_s3rec: every item attribute, joined by '|'), "
        "--format-option buys_path=yoochoose-buys.dat (yoochoose) (default: none).",
    )
    parser.add_argument(
        "--column", action="append", metavar="CANONICAL=FILE_COLUMN",
        help="Map a canonical column (user_id, item_id, event_type, timestamp, category, price, query, session_id, "
        "quantity) to the file's column name; repeatable (default: canonical names, else guessed from the header). "
        "Example: --column user_id=visitorid",
    )
    parser.add_argument(
        "--schema", metavar="FILE",
        help="YAML or JSON file describing the log, with any of: " + ", ".join(SCHEMA_KEYS) + ". Example: "
        "{column_map: {user_id: visitorid, item_id: itemid, event_type: event}, event_aliases: {transaction: "
        "purchase}, timestamp_unit: ms}. Options given on the command line win (default: none).",
    )
    parser.add_argument("--column-names", help="Comma-separated header for files without one, e.g. Taobao (default: the file's first line).")
    parser.add_argument("--delimiter", help="Field separator of csv/tsv files (default: ',' for csv, tab for tsv).")
    parser.add_argument("--encoding", default="utf-8", help="Text encoding of csv/tsv/jsonl files, e.g. latin-1 (default: %(default)s).")
    parser.add_argument(
        "--event-alias", action="append", metavar="RAW=CANONICAL",
        help="Map a raw event type to view/click/search/cart/fav/purchase; repeatable (default: the built-in aliases "
        "only). Example: --event-alias pv=view",
    )
    parser.add_argument(
        "--timestamp-unit", default="auto", choices=["auto", "s", "ms", "iso"],
        help="Timestamp encoding; 'auto' tells seconds from milliseconds by magnitude and reads ISO-8601 strings "
        "(default: %(default)s).",
    )
    parser.add_argument(
        "--unknown-events", default="error", choices=["error", "drop"],
        help="Unknown event types: stop, or drop and count (default: %(default)s).",
    )
    parser.add_argument(
        "--bad-timestamps", default="error", choices=["error", "drop"],
        help="Unparsable/absurd timestamps: stop, or drop and count (default: %(default)s).",
    )


SCHEMA_KEYS = (
    "column_map", "column_names", "delimiter", "encoding", "event_aliases", "file_format", "timestamp_unit",
    "unknown_events", "bad_timestamps",
)


def _read_defaults() -> dict:
    """Read options as the CLI sets them when the user gives no flag."""
    parser = argparse.ArgumentParser()
    add_read_options(parser)
    defaults = vars(parser.parse_args([]))
    return {"file_format": None, "column_map": None, "column_names": None, "event_aliases": None,
            **{key: defaults[key] for key in ("delimiter", "encoding", "timestamp_unit", "unknown_events", "bad_timestamps")}}


def merge_schema_file(path: str, read_options: dict, *, defaults: dict, command: str = "prepare") -> dict:
    """Read options from a YAML/JSON schema file, overridden by any option the user set explicitly."""
    import yaml  # JSON is a subset of YAML

    try:
        schema = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise SystemExit(f"seqbert {command}: error: cannot read schema file {path}: {error}") from None
    if not isinstance(schema, dict):
        raise SystemExit(f"seqbert {command}: error: schema file {path} must hold a mapping of options.")
    unknown = sorted(set(schema) - set(SCHEMA_KEYS))
    if unknown:
        raise SystemExit(f"seqbert {command}: error: schema file {path} has unknown keys {unknown}; allowed: {', '.join(SCHEMA_KEYS)}.")
    merged = dict(read_options)
    for key, value in schema.items():
        if read_options.get(key) == defaults.get(key):  # not set on the command line
            merged[key] = value
    return merged


def read_options_from_args(args: argparse.Namespace, command: str) -> dict:
    """The ``read_options`` of the flags of :func:`add_read_options`: command line over ``--schema`` file,
    plus the ``--format-option`` values of a ``--dataset-format`` reader."""
    read_options = {
        "file_format": args.file_format,
        "column_map": _pairs(args.column, "--column") or None,
        "column_names": args.column_names.split(",") if args.column_names else None,
        "delimiter": args.delimiter,
        "encoding": args.encoding,
        "event_aliases": _pairs(args.event_alias, "--event-alias") or None,
        "timestamp_unit": args.timestamp_unit,
        "unknown_events": args.unknown_events,
        "bad_timestamps": args.bad_timestamps,
    }
    if args.schema:
        read_options = merge_schema_file(args.schema, read_options, defaults=_read_defaults(), command=command)
    if args.format_option:
        if not args.dataset_format:
            raise SystemExit(f"seqbert {command}: error: --format-option applies with --dataset-format only.")
        import yaml

        format_options = _pairs(args.format_option, "--format-option")
        read_options.update({key: yaml.safe_load(value) for key, value in format_options.items()})
    return read_options


def add_prepare_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "prepare",
        help="Raw event log → cleaned, split, tokenized data folder.",
        description="Read an event log (csv/tsv/parquet/jsonl, optionally .gz), clean it with a per-reason drop "
        "report, build per-user sequences, split without leakage and fit the tokenizer on the train split only.",
    )
    parser.add_argument("input", nargs="+", help="The event log: " + INPUT_HELP + ".")
    parser.add_argument("--output-dir", required=True, help="Folder to write the prepared data to.")
    add_read_options(parser)
    parser.add_argument(
        "--since", metavar="TIME",
        help="Keep events at or after TIME: an ISO date or datetime (UTC unless it has a zone, e.g. 2024-05-01 or "
        "2024-05-01T06:00:00+02:00) or epoch seconds. Rows read outside the window are counted as "
        "outside_time_window in the drop report; parquet row groups and Hive partitions that cannot hold such "
        "events are not read, and protocol.json lists what was skipped (default: no lower bound).",
    )
    parser.add_argument(
        "--until", metavar="TIME",
        help="Keep events strictly before TIME (same forms as --since) (default: no upper bound).",
    )
    parser.add_argument(
        "--partition-time-column", metavar="NAME",
        help="Hive partition field holding ISO dates (dt for dt=2024-05-01/) that --since/--until prune whole "
        "partitions by; a partition is kept if its date is within a day of the window, so local-time partitions "
        "are safe (default: detected when exactly one partition field holds ISO dates, or when --column "
        "timestamp=FIELD names a partition field).",
    )
    parser.add_argument(
        "--split", default="leave_one_out", choices=["leave_one_out", "temporal"],
        help="Evaluation protocol. With 'temporal' the count rules below (--min-user-events, --min-item-support, "
        "--k-core, --max-events-per-*) count only events before the validation cutoff, so the future being "
        "evaluated never decides which users and items are kept.",
    )
    parser.add_argument("--validation-fraction", type=float, default=0.1, help="temporal: share of events after the validation cutoff.")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="temporal: share of events after the test cutoff.")
    parser.add_argument("--min-user-events", type=int, default=2, help="Drop users with fewer events (counted).")
    parser.add_argument("--min-item-support", type=int, default=1, help="Drop items seen in fewer events (counted).")
    parser.add_argument("--max-events-per-user", type=int, help="Drop bot-like users above this many events (counted).")
    parser.add_argument(
        "--max-events-per-minute", type=int, metavar="N",
        help="Drop bot-like users with more than N events within any 60 seconds (counted as bot_user).",
    )
    parser.add_argument(
        "--max-events-per-hour", type=int, metavar="N",
        help="Drop bot-like users with more than N events within any hour (counted as bot_user).",
    )
    parser.add_argument(
        "--k-core", action="store_true",
        help="Repeat --min-item-support and --min-user-events until stable (iterative k-core), instead of once; "
        "every pass is counted under rare_item / short_user (also with --partitions).",
    )
    parser.add_argument(
        "--partitions", type=int, metavar="K",
        help="Prepare a log larger than memory: stream it into K user partitions on disk and prepare one at a "
        "time (same result as in memory; about 0.5 GB of RAM per million events of one partition).",
    )
    parser.add_argument(
        "--output-shards", type=int, metavar="N",
        help="Write every split and the sequences as N parquet shards each (dataset/{train,validation,test}/"
        "part-NNNNN.parquet, sequences/part-NNNNN.parquet; same rows, order, columns and Arrow types; protocol.json "
        "records the layout and each shard's rows) instead of the Arrow layout. Training reads either; `seqbert "
        "pretrain --streaming` trains from the shards without loading the train split (docs/scaling-data.md). "
        "Default: the Arrow layout.",
    )
    parser.add_argument("--session-gap-minutes", type=float, default=30.0, help="Inactivity gap that starts a new session.")
    parser.add_argument(
        "--loo-target", default="last_event", choices=["last_event", "last_purchase"],
        help="leave_one_out: hold out each user's last event (any type), or their last purchase "
        "(validation = the purchase before it; events after the last purchase are in no split).",
    )
    parser.add_argument(
        "--collapse-repeated-views", action="store_true",
        help="Remove a view that repeats the user's previous event (a view of the same item) within a session; "
        "carts and purchases are never removed; counted as collapsed_repeat_view in the drop report.",
    )
    parser.add_argument(
        "--collapse-across-sessions", action="store_true",
        help="With --collapse-repeated-views: also collapse a repeated view that starts a new session.",
    )
    parser.add_argument("--max-length", type=int, default=200, help="Tokenizer's longest sequence (appended mask included).")
    parser.add_argument("--vocab-min-count", type=int, default=1, help="Items seen fewer times in training map to [UNK].")
    parser.add_argument("--vocab-max-size", type=int, help="Keep only the most frequent items in the vocabulary.")
    parser.add_argument(
        "--unseen-items", default="unk", choices=["unk", "hash"],
        help="Items outside the vocabulary (unseen in training, or cut by --vocab-min-count/--vocab-max-size): "
        "'unk' maps them all to [UNK]; 'hash' to one of --num-hash-buckets tokens chosen by a stable hash of the "
        "item id, so the same unseen item always gets the same token.",
    )
    parser.add_argument(
        "--num-hash-buckets", type=int, default=0, metavar="N",
        help="Number of hash-bucket tokens for --unseen-items hash (required there, e.g. 1024).",
    )
    parser.add_argument(
        "--input-hash", default="xxh3_128", choices=["xxh3_128", "sha256", "parquet_footer"],
        help="Hash of each input file recorded in protocol.json (and the model card) to identify the data: "
        "'xxh3_128' (default; the XXH3 128-bit digest of the content, ~5x faster), 'sha256' when a cryptographic "
        "digest is needed (computed alongside the parse; ~1 s more per GB of input), or 'parquet_footer' (parquet "
        "only: xxh3_128 of each file's size and footer, two small reads, for object storage, where a content hash "
        "reads every file a second time, and whole files that --since/--until read only in part).",
    )


def run_prepare(args: argparse.Namespace) -> dict:
    from .prepare import PrepareOptions, format_summary, prepare_file

    if args.split != "leave_one_out" and args.loo_target != "last_event":
        raise SystemExit("seqbert prepare: error: --loo-target applies to --split leave_one_out only.")
    if args.unseen_items == "hash" and args.num_hash_buckets < 1:
        raise SystemExit("seqbert prepare: error: --unseen-items hash needs --num-hash-buckets N with N >= 1.")
    if args.unseen_items == "unk" and args.num_hash_buckets:
        raise SystemExit("seqbert prepare: error: --num-hash-buckets applies to --unseen-items hash only.")
    options = PrepareOptions(
        split=args.split,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
        min_user_events=args.min_user_events,
        min_item_support=args.min_item_support,
        max_events_per_user=args.max_events_per_user,
        max_events_per_minute=args.max_events_per_minute,
        max_events_per_hour=args.max_events_per_hour,
        k_core=args.k_core,
        session_gap_seconds=int(args.session_gap_minutes * 60),
        loo_target=args.loo_target,
        collapse_repeated_views=args.collapse_repeated_views,
        collapse_within_session=not args.collapse_across_sessions,
        max_length=args.max_length,
        vocab_min_count=args.vocab_min_count,
        vocab_max_size=args.vocab_max_size,
        unseen_items=args.unseen_items,
        num_hash_buckets=args.num_hash_buckets,
        input_hash=args.input_hash,
    )
    read_options = read_options_from_args(args, "prepare")
    window = {"since": args.since, "until": args.until, "partition_time_column": args.partition_time_column}
    read_options.update({key: value for key, value in window.items() if value is not None})
    several = not isinstance(args.input, str) and len(args.input) > 1
    if args.dataset_format and (several or any(value is not None for value in window.values())):
        raise SystemExit(
            "seqbert prepare: error: --dataset-format reads one file; it does not take several inputs or "
            "--since/--until/--partition-time-column."
        )
    args.input = _input_arg(args.input)
    if args.partitions:
        if args.dataset_format:
            raise SystemExit("seqbert prepare: error: --partitions reads generic files; it does not take --dataset-format.")
        from .data.partitioned import prepare_partitioned

        if args.output_shards:  # the partitions are assembled in the Arrow layout first, beside the output
            import shutil

            staging = Path(f"{args.output_dir}.arrow-staging")
            prepared = prepare_partitioned(args.input, options, staging, args.partitions, read_options=read_options)
            prepared.save(args.output_dir, shards=args.output_shards)
            shutil.rmtree(staging, ignore_errors=True)
        else:
            prepared = prepare_partitioned(args.input, options, args.output_dir, args.partitions, read_options=read_options)
    else:
        prepared = prepare_file(
            args.input, options, output_dir=None if args.output_shards else args.output_dir, read_options=read_options,
            dataset_format=args.dataset_format,
        )
        if args.output_shards:
            prepared.save(args.output_dir, shards=args.output_shards)
    summary = {
        "output_dir": args.output_dir,
        "drop_report": prepared.drop_report,
        "statistics": prepared.statistics["all"],
        "split_rows": prepared.protocol["rows"],
        "vocabulary_items": len(prepared.tokenizer.items),
    }
    print(format_summary(prepared))
    print(f"\nWrote {args.output_dir} (dataset/, sequences/, tokenizer/, protocol.json, statistics.json, drop_report.json)")
    return summary


def add_training_passthrough(commands: argparse._SubParsersAction, name: str, text: str) -> None:
    parser = commands.add_parser(name, help=text, description=f"{text} Run `seqbert {name} --help` for every option.", add_help=False)
    parser.add_argument("options", nargs=argparse.REMAINDER, help="Options of the training script.")


def add_evaluate_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "evaluate",
        help="Next-item metrics of a saved model and the baselines on a prepared split.",
        description="Full-catalog ranking with pessimistic ties; popularity and Markov baselines through the same code.",
    )
    parser.add_argument("model_dir", help="Saved SeqBERT masked-behavior folder.")
    parser.add_argument("--data-dir", required=True, help="Prepared-data folder (its tokenizer must match the model's).")
    parser.add_argument("--split", default="test", choices=["validation", "test"], help="Which split to evaluate.")
    parser.add_argument("--batch-size", type=int, default=256, help="Evaluation batch size.")
    parser.add_argument("--max-length", type=int, default=None, help="Longest input (default: the model's).")
    parser.add_argument("--exclude-history", action="store_true", help="Remove history items from the ranking (labelled variant).")
    parser.add_argument(
        "--item-chunk-size", type=int, default=None,
        help="Rank the model's scores item chunk by item chunk (exact same ranks, bounded memory for catalogs of "
        "millions of items); history kept.",
    )
    parser.add_argument(
        "--next-item-query", default=None, choices=["mask", "causal", "mask+causal"],
        help="Bidirectional model: score from the appended [MASK] (mask), from a left-to-right pass of the same "
        "weights (causal) or from the mean of both (mask+causal); the last two for models trained with "
        "--next_item_loss_weight. Default: the model's own.",
    )


def run_evaluate(args: argparse.Namespace) -> dict:
    from torch.utils.data import DataLoader

    from .baselines import fit_next_item_baselines
    from .collators import DataCollatorWithLeftPadding
    from .evaluation import collect_ranks_chunked, evaluate_scorer, model_scorer
    from .metrics.functional import ranking_metrics
    from .modeling_seqbert import SeqBertForMaskedBehaviorModeling
    from .prepared import PreparedData, encode_for_next_item
    from .tokenization_seqbert import BehaviorTokenizer
    from .training.sampling import sorted_by_length

    data = PreparedData.load(args.data_dir)
    model = SeqBertForMaskedBehaviorModeling.from_pretrained(args.model_dir).eval()
    if args.next_item_query:
        try:
            model.set_next_item_query(args.next_item_query)
        except ValueError as error:
            raise SystemExit(f"seqbert evaluate: error: {error}") from None
    tokenizer = BehaviorTokenizer.from_pretrained(args.model_dir)
    if tokenizer.items != data.tokenizer.items:
        raise SystemExit(f"{args.model_dir} was trained with a different item vocabulary than {args.data_dir}.")
    max_length = args.max_length or model.config.max_position_embeddings
    rows = sorted_by_length(encode_for_next_item(data.splits[args.split], tokenizer, max_length))  # less padding
    loader = DataLoader(rows, batch_size=args.batch_size, collate_fn=DataCollatorWithLeftPadding())
    scorers = {"seqbert": model_scorer(model), **fit_next_item_baselines(data.splits["train"], tokenizer)}
    results = {
        name: evaluate_scorer(scorer, loader, num_special_tokens=tokenizer.num_special_tokens, exclude_history=args.exclude_history)
        for name, scorer in scorers.items()
        if not (name == "seqbert" and args.item_chunk_size)
    }
    if args.item_chunk_size:
        if args.exclude_history:
            raise SystemExit("seqbert evaluate: error: --item-chunk-size ranks with history kept; drop --exclude-history.")
        ranks, num_items = collect_ranks_chunked(model, loader, chunk_size=args.item_chunk_size)
        results = {"seqbert": ranking_metrics(ranks, num_items=num_items), **results}
    label = "history removed" if args.exclude_history else "history kept"
    output = {
        "split": args.split, "ranking": f"full catalog, pessimistic ties, {label}",
        "next_item_query": model.config.next_item_query, "metrics": results,
    }
    print(json.dumps(output, indent=2))
    return output


def add_batch_scoring_parsers(commands: argparse._SubParsersAction) -> None:
    """``recommend`` and ``embed``: score every user of an event log with a pretrained folder, to parquet."""
    summaries = {
        "recommend": "Top-k next items of every user of an event log → parquet (user_id, rank, item_id, score).",
        "embed": "A vector per user of an event log → parquet (user_id, embedding).",
    }
    descriptions = {
        "recommend": "Rank the catalog for every user of LOG through seqbert.Recommender (the same encode / score / "
        "rank as Recommender.recommend, tested equal) and write one row per (user, item): user_id, rank (1 = best), "
        "item_id, score (the model's next-item logit, float32).",
        "embed": "Encode every user of LOG through seqbert.Recommender.embed_users (the encoder's hidden state at the "
        "appended [MASK]) and write user_id and embedding, a fixed-size list of hidden_size float32 values.",
    }
    common = (
        " The log is read like `seqbert prepare` reads it (same options below); rows with a missing field and "
        "exact duplicate events are removed as prepare cleans them, no user is dropped for being short, and each "
        "user's events are taken in time order. Users are written in user_id order, chunk by chunk, to a "
        "temporary file renamed to --output at the end."
    )
    for name, summary in summaries.items():
        parser = commands.add_parser(name, help=summary, description=descriptions[name] + common)
        parser.add_argument("model_dir", metavar="MODEL", help="Saved SeqBERT masked-behavior folder (seqbert pretrain's output).")
        parser.add_argument(
            "--events", required=True, nargs="+", metavar="LOG",
            help="Event log to score, in any format seqbert prepare reads: " + INPUT_HELP + " (required).",
        )
        parser.add_argument("--output", required=True, help="The .parquet file to write; refused if it exists, unless --overwrite (required).")
        if name == "recommend":
            parser.add_argument("--k", type=int, default=100, help="Items per user; fewer if the catalog or --exclude-seen runs out (default: %(default)s).")
            parser.add_argument("--exclude-seen", action="store_true", help="Drop every item in the user's own history from their ranking (default: off).")
        parser.add_argument("--batch-size", type=int, default=1024, help="Users encoded and scored per forward pass (default: %(default)s).")
        parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0 (default: %(default)s).")
        parser.add_argument("--overwrite", action="store_true", help="Replace an existing --output (default: off).")
        parser.add_argument("--no-progress", action="store_true", help="Hide the progress bar (default: shown).")
        add_read_options(parser)


def run_batch_scoring(args: argparse.Namespace) -> dict:
    """``seqbert recommend`` / ``seqbert embed``: wiring only; the work is in :mod:`seqbert.batch_scoring`."""
    import time

    from . import batch_scoring

    command = args.command
    if args.batch_size < 1:
        raise SystemExit(f"seqbert {command}: error: --batch-size must be >= 1, got {args.batch_size}.")
    if command == "recommend" and args.k < 1:
        raise SystemExit(f"seqbert {command}: error: --k must be >= 1, got {args.k}.")
    args.events = _input_arg(args.events)
    batch_scoring.check_paths(args.model_dir, args.events, args.output, overwrite=args.overwrite)
    read_options = read_options_from_args(args, command)
    start = time.perf_counter()
    recommender = batch_scoring.load_recommender(args.model_dir, device=args.device, batch_size=args.batch_size)
    sequences = batch_scoring.read_user_sequences(args.events, read_options=read_options, dataset_format=args.dataset_format)
    options = {"batch_size": args.batch_size, "overwrite": args.overwrite, "progress": not args.no_progress}
    if command == "recommend":
        counts = batch_scoring.recommend_to_parquet(
            recommender, sequences, args.output, k=args.k, exclude_seen=args.exclude_seen, **options
        )
    else:
        counts = batch_scoring.embed_to_parquet(recommender, sequences, args.output, **options)
    seconds = time.perf_counter() - start
    print(f"Wrote {args.output}: {counts['rows']} rows for {counts['users']} users in {seconds:.1f} s")
    return {"output": args.output, **counts, "seconds": seconds}


def add_explain_parser(commands: argparse._SubParsersAction) -> None:
    """``explain``: which of one user's events drove a prediction (:mod:`seqbert.explain`)."""
    from .explain import DEFAULT_STEPS, METHODS

    parser = commands.add_parser(
        "explain", help="Which of one user's events drove a purchase probability or an item's score: top events + timeline PNG.",
        description="Read LOG like `seqbert recommend` reads it (same options below), take USER_ID's events in time order, "
        "and attribute the model's prediction to them (Classifier.explain / Recommender.explain: integrated gradients "
        "over the item, event-type and time embeddings, with Captum; pip install 'seqbert[explain]'). Prints the "
        "prediction, its baseline and the events with the largest |attribution| (logit units, split into parts), and "
        "writes the user's timeline coloured by attribution. Scores describe the model, not the shop: see 'Reading an "
        "explanation' in docs/explaining.md.",
    )  # fmt: skip
    parser.add_argument("model_dir", metavar="MODEL",
                        help="Saved SeqBERT folder: masked-behavior (explains an item's score) or fine-tuned classifier "
                        "(explains the probability).")  # fmt: skip
    parser.add_argument("--events", required=True, metavar="LOG", help="Event log holding the user's events, in any format seqbert prepare reads (required).")
    parser.add_argument("--user", required=True, metavar="USER_ID", help="The user whose prediction is explained (required).")
    parser.add_argument("--item", metavar="ITEM",
                        help="Masked-behavior folder: the item whose score is explained (default: the user's top "
                        "recommendation). Item-conversion / click classifier: the candidate item (required there).")  # fmt: skip
    parser.add_argument("--query-timestamp", type=int, metavar="UNIX_SECONDS", help="Classifier: the prediction time (default: the user's last event).")
    parser.add_argument("--candidate-events", type=int, metavar="N",
                        help="Classifier fine-tuned with candidate popularity: the candidate's event count, all users, "
                        "before the prediction time (default: none).")  # fmt: skip
    parser.add_argument("--method", default="integrated_gradients", choices=METHODS, help="Attribution method (default: %(default)s).")
    parser.add_argument("--n-steps", type=int, default=DEFAULT_STEPS, help="Integration points of integrated gradients (default: %(default)s).")
    parser.add_argument("--top", type=int, default=10, help="Events printed, largest |attribution| first (default: %(default)s).")
    parser.add_argument("--output", metavar="PNG", help="Timeline PNG to write, replaced if it exists (default: explanation-USER_ID.png in the current folder).")
    parser.add_argument("--json", metavar="FILE", help="Also write the whole explanation (Explanation.to_dict) as JSON to FILE (default: none).")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0 (default: %(default)s).")
    add_read_options(parser)


def run_explain(args: argparse.Namespace) -> dict:
    """``seqbert explain``: wiring only; the work is in :mod:`seqbert.explain` and :func:`seqbert.plots.plot_explanation`."""
    from . import batch_scoring
    from .explain import format_top_events, load_explainer, user_events
    from .inference import Recommender
    from .plots import plot_explanation

    if args.top < 1 or args.n_steps < 1:
        raise SystemExit(f"seqbert explain: error: --top and --n-steps must be >= 1, got {args.top} and {args.n_steps}.")
    output = Path(args.output or f"explanation-{args.user}.png")
    batch_scoring.check_paths(args.model_dir, args.events, output, overwrite=True)
    model = load_explainer(args.model_dir, device=args.device)
    sequences = batch_scoring.read_user_sequences(args.events, read_options=read_options_from_args(args, "explain"),
                                                  dataset_format=args.dataset_format)  # fmt: skip
    events = user_events(sequences, args.user)
    options = {"method": args.method, "n_steps": args.n_steps}
    if isinstance(model, Recommender):
        if args.query_timestamp is not None or args.candidate_events is not None:
            raise SystemExit("seqbert explain: error: --query-timestamp and --candidate-events apply to classifier folders.")
        explanation = model.explain(events, args.item or model.recommend(events, k=1).item_ids[0], **options)
    else:
        explanation = model.explain(events, args.query_timestamp, args.item, candidate_events=args.candidate_events, **options)
    print(format_top_events(explanation, args.top))
    plot_explanation(explanation, path=output, title=f"User {args.user}: why {explanation.target}")
    if args.json:
        Path(args.json).write_text(explanation.to_json(indent=2) + "\n", encoding="utf-8")
    print(f"Wrote {output}" + (f" and {args.json}" if args.json else ""))
    return explanation.to_dict()


def add_model_use_parsers(commands: argparse._SubParsersAction) -> None:
    """``export onnx|embeddings``, ``serve`` and ``push``: using and sharing a trained model folder."""
    export = commands.add_parser("export", help="Export a model folder: ONNX next-item scorer, item embeddings.")
    targets = export.add_subparsers(dest="export_target", required=True)
    onnx = targets.add_parser(
        "onnx", help="Encoder + next-item head → ONNX (dynamic batch and length).",
        description="Inputs input_ids, behavior_ids, time_ids, attention_mask (int64, as the tokenizer makes them); "
        "output `scores` (batch, num_items). Checked against PyTorch with ONNX Runtime after export.",
    )
    onnx.add_argument("model_dir", help="Saved SeqBERT masked-behavior folder.")
    onnx.add_argument("--output", required=True, help="The .onnx file to write.")
    onnx.add_argument("--opset", type=int, default=17, help="ONNX opset version.")
    onnx.add_argument("--exporter", default="legacy", choices=["legacy", "dynamo"], help="torch.onnx exporter (dynamo needs onnxscript).")
    onnx.add_argument("--no-check", action="store_true", help="Skip the ONNX Runtime vs PyTorch comparison.")
    embeddings = targets.add_parser(
        "embeddings", help="Item embeddings → .parquet (item_id, vector) or .npy (+ .ids.json).",
    )
    embeddings.add_argument("model_dir", help="Saved SeqBERT folder.")
    embeddings.add_argument("--output", required=True, help="items.parquet or items.npy.")

    serve = commands.add_parser(
        "serve", help="HTTP service: /health, /recommend (masked-behavior folder) or /predict (classifier folder).",
        description="FastAPI + uvicorn (pip install 'seqbert[serve]'). Requests are validated with the event rules of "
        "`seqbert prepare`; limits give clear 4xx errors. Concurrent requests are scored together (dynamic "
        "micro-batching) from a bounded queue: 503 + Retry-After when it is full. SIGTERM drains: no new connections, "
        "every accepted request answered, then exit. `\"explain\": true` in a request adds the per-event "
        "attributions of the answer (pip install 'seqbert[explain]'). Guide: docs/using-and-serving.md.",
    )
    serve.add_argument("model_dir", help="Saved SeqBERT folder (masked-behavior or classifier).")
    serve.add_argument("--host", default="127.0.0.1", help="Interface to bind (default: loopback only).")
    serve.add_argument("--port", type=int, default=8000, help="TCP port.")
    serve.add_argument("--device", default="cpu", help="torch device, e.g. cuda:0.")
    serve.add_argument("--max-events", type=int, default=1000, help="Most events accepted per request (422 above).")
    serve.add_argument("--max-k", type=int, default=1000, help="Largest k accepted (422 above).")
    serve.add_argument("--max-body-bytes", type=int, default=1_000_000, help="Largest request body (413 above).")
    serve.add_argument("--threads", type=int,
                       help="torch intra-op threads per worker (default: its share of the CPU cores less one for its "
                       "event loop, at least 1; with --batching off and one worker, torch's choice).")
    serve.add_argument("--max-lifetime", type=float, help="Stop by itself after this many seconds (tests, benchmarks).")
    from . import serve as serving  # standard library only until a server starts

    serve.add_argument("--workers", type=int, default=1,
                       help="Processes serving the port (each loads the model; Linux: one SO_REUSEPORT socket each).")
    serve.add_argument("--batching", choices=["on", "off"], default="on",
                       help="off: one request per forward pass behind a lock, unbounded waiting (the server before "
                       "micro-batching, for comparison).")
    serve.add_argument("--max-batch-size", type=int, default=serving.DEFAULT_MAX_BATCH_SIZE,
                       help="Most requests scored in one forward pass.")
    serve.add_argument("--max-batch-delay-ms", type=float, default=serving.DEFAULT_MAX_BATCH_DELAY_MS,
                       help="How long a batch may wait to fill after its oldest request arrived (0: take what is "
                       "queued whenever the model is free).")
    serve.add_argument("--max-queue", type=int, default=serving.DEFAULT_MAX_QUEUE,
                       help="Most requests waiting for the model; beyond, 503 with Retry-After at once.")
    serve.add_argument("--max-queue-wait-ms", type=float, default=serving.DEFAULT_MAX_QUEUE_WAIT_MS,
                       help="Refuse (503 with Retry-After, at once) a request expected to wait longer than this "
                       "for the model: the batches ahead of it at the running mean of recent batch times. 0: "
                       "only --max-queue bounds the wait.")
    serve.add_argument("--request-timeout", type=float, default=serving.DEFAULT_REQUEST_TIMEOUT_S,
                       help="Seconds a request may take in all: 503 if it was not started by then, 504 if its "
                       "forward pass had started.")
    serve.add_argument("--api-key-env", metavar="NAME",
                       help="Require `Authorization: Bearer <key>` on every endpoint but /health, the key read from "
                       "environment variable NAME (never from the command line).")

    push = commands.add_parser(
        "push", help="Validate a model folder and upload it to the Hugging Face Hub.",
        description="The token is read from the HF_TOKEN environment variable only (never a command-line option, never logged).",
    )
    push.add_argument("model_dir", help="Saved model folder (checked with seqbert.hub.validate_model_folder first).")
    push.add_argument("--repo-id", required=True, help="owner/name of the Hub model repo (created if missing).")
    push.add_argument("--private", action="store_true", help="Create the repo as private.")
    push.add_argument("--commit-message", default="Upload seqbert model", help="Commit message on the Hub.")


def run_model_use(args: argparse.Namespace) -> int:
    import os

    command = args.command
    try:
        if command == "export" and args.export_target == "onnx":
            from .export import export_onnx

            path = export_onnx(args.model_dir, args.output, opset=args.opset, exporter=args.exporter, check=not args.no_check)
            print(f"Wrote {path}")
        elif command == "export":
            from .export import export_item_embeddings

            print(f"Wrote {export_item_embeddings(args.model_dir, args.output)}")
        elif command == "serve":
            from .serve import serve

            serve(
                args.model_dir, host=args.host, port=args.port, device=args.device, max_events=args.max_events,
                max_k=args.max_k, max_body_bytes=args.max_body_bytes, max_lifetime_seconds=args.max_lifetime,
                threads=args.threads, workers=args.workers, api_key_env=args.api_key_env,
                log_level=args.log_level.lower(), batching=args.batching == "on", max_batch_size=args.max_batch_size,
                max_batch_delay_ms=args.max_batch_delay_ms, max_queue=args.max_queue,
                max_queue_wait_ms=args.max_queue_wait_ms, request_timeout=args.request_timeout,
            )
        elif command == "push":
            from .hub import push_folder

            if not os.environ.get("HF_TOKEN"):
                raise ValueError("Set the HF_TOKEN environment variable to a Hugging Face token with write access.")
            url = push_folder(args.model_dir, args.repo_id, token=os.environ["HF_TOKEN"], private=args.private, commit_message=args.commit_message)
            print(f"Uploaded {args.model_dir} to {url}")
    except (ValueError, FileNotFoundError, ImportError, OSError) as error:
        print(f"seqbert {command}: error: {error}", file=sys.stderr)
        return 2
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqbert", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default="INFO", help="Python logging level.")
    commands = parser.add_subparsers(dest="command", required=True)
    from .demo import add_demo_parser

    add_demo_parser(commands)
    add_prepare_parser(commands)
    add_training_passthrough(commands, "pretrain", "Masked-behavior pretraining on a prepared folder.")
    add_training_passthrough(
        commands, "finetune", "Fine-tuning on a prepared folder: --task user-purchase | item-conversion | click."
    )
    add_evaluate_parser(commands)
    add_batch_scoring_parsers(commands)
    add_explain_parser(commands)
    add_model_use_parsers(commands)
    state_defaults(parser)
    return parser


def state_defaults(parser: argparse.ArgumentParser) -> None:
    """Append its default to the help of every option (of every subcommand) whose text does not state one."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for subparser in dict.fromkeys(action.choices.values()):
                state_defaults(subparser)
            continue
        if not action.option_strings or not action.help or action.help == argparse.SUPPRESS or action.required:
            continue
        if "default" in action.help.lower() or isinstance(action, argparse._HelpAction):
            continue
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            action.help += f" (default: {'on' if action.default else 'off'})"
        elif action.default is None:
            action.help += " (default: none)"
        else:
            action.help += " (default: %(default)s)"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=args.log_level.upper())
    if args.command in ("pretrain", "finetune"):
        from .training import finetune, pretrain

        module = pretrain if args.command == "pretrain" else finetune
        # Everything after the command name goes to the training script unchanged: argparse's REMAINDER
        # would otherwise split an option from its value when the first option looks like a flag.
        module.main(argv[argv.index(args.command) + 1 :])
        return 0
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command in ("export", "serve", "push"):
        return run_model_use(args)
    from .data.errors import EventDataError

    try:
        if args.command == "prepare":
            run_prepare(args)
        elif args.command == "evaluate":
            run_evaluate(args)
        elif args.command in ("recommend", "embed"):
            from .batch_scoring import BatchScoringError
            from .inference import InvalidEventsError

            try:
                run_batch_scoring(args)
            except (BatchScoringError, InvalidEventsError) as error:  # e.g. an event type the model does not know
                print(f"seqbert {args.command}: error: {error}", file=sys.stderr)
                return 2
        elif args.command == "explain":
            try:
                run_explain(args)
            except (ValueError, ImportError, OSError) as error:  # unknown user or item, no Captum, unreadable folder
                print(f"seqbert explain: error: {error}", file=sys.stderr)
                return 2
        elif args.command == "demo":
            from .demo import run_demo

            run_demo(args)
    except (EventDataError, FileNotFoundError) as error:
        print(f"seqbert {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
