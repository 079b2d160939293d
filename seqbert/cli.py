"""The ``seqbert`` command: demo · prepare · pretrain · finetune · evaluate.

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


def add_prepare_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "prepare",
        help="Raw event log → cleaned, split, tokenized data folder.",
        description="Read an event log (csv/tsv/parquet/jsonl, optionally .gz), clean it with a per-reason drop "
        "report, build per-user sequences, split without leakage and fit the tokenizer on the train split only.",
    )
    parser.add_argument("input", help="Event log file.")
    parser.add_argument("--output-dir", required=True, help="Folder to write the prepared data to.")
    parser.add_argument("--format", dest="file_format", help="csv | tsv | parquet | jsonl (default: from the suffix).")
    parser.add_argument(
        "--column", action="append", metavar="CANONICAL=FILE_COLUMN",
        help="Map a canonical column (user_id, item_id, event_type, timestamp, category, price, query, session_id, "
        "quantity) to the file's column name; repeatable. Example: --column user_id=visitorid",
    )
    parser.add_argument("--column-names", help="Comma-separated header for files without one (e.g. Taobao).")
    parser.add_argument("--delimiter", help="Field separator of csv/tsv files (default: ',' for csv, tab for tsv).")
    parser.add_argument("--encoding", default="utf-8", help="Text encoding of csv/tsv/jsonl files, e.g. latin-1.")
    parser.add_argument(
        "--event-alias", action="append", metavar="RAW=CANONICAL",
        help="Map a raw event type to view/click/search/cart/fav/purchase; repeatable. Example: --event-alias pv=view",
    )
    parser.add_argument("--timestamp-unit", default="auto", choices=["auto", "s", "ms", "iso"], help="Timestamp encoding.")
    parser.add_argument("--unknown-events", default="error", choices=["error", "drop"], help="Unknown event types: stop, or drop and count.")
    parser.add_argument("--bad-timestamps", default="error", choices=["error", "drop"], help="Unparsable/absurd timestamps: stop, or drop and count.")
    parser.add_argument("--split", default="leave_one_out", choices=["leave_one_out", "temporal"], help="Evaluation protocol.")
    parser.add_argument("--validation-fraction", type=float, default=0.1, help="temporal: share of events after the validation cutoff.")
    parser.add_argument("--test-fraction", type=float, default=0.1, help="temporal: share of events after the test cutoff.")
    parser.add_argument("--min-user-events", type=int, default=2, help="Drop users with fewer events (counted).")
    parser.add_argument("--min-item-support", type=int, default=1, help="Drop items seen in fewer events (counted).")
    parser.add_argument("--max-events-per-user", type=int, help="Drop bot-like users above this many events (counted).")
    parser.add_argument("--session-gap-minutes", type=float, default=30.0, help="Inactivity gap that starts a new session.")
    parser.add_argument("--max-length", type=int, default=200, help="Tokenizer's longest sequence (appended mask included).")
    parser.add_argument("--vocab-min-count", type=int, default=1, help="Items seen fewer times in training map to [UNK].")
    parser.add_argument("--vocab-max-size", type=int, help="Keep only the most frequent items in the vocabulary.")


def run_prepare(args: argparse.Namespace) -> dict:
    from .prepare import PrepareOptions, prepare_file

    options = PrepareOptions(
        split=args.split,
        validation_fraction=args.validation_fraction,
        test_fraction=args.test_fraction,
        min_user_events=args.min_user_events,
        min_item_support=args.min_item_support,
        max_events_per_user=args.max_events_per_user,
        session_gap_seconds=int(args.session_gap_minutes * 60),
        max_length=args.max_length,
        vocab_min_count=args.vocab_min_count,
        vocab_max_size=args.vocab_max_size,
    )
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
    prepared = prepare_file(args.input, options, output_dir=args.output_dir, read_options=read_options)
    summary = {
        "output_dir": args.output_dir,
        "drop_report": prepared.drop_report,
        "statistics": prepared.statistics["all"],
        "split_rows": prepared.protocol["rows"],
        "vocabulary_items": len(prepared.tokenizer.items),
    }
    print(json.dumps(summary, indent=2))
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


def run_evaluate(args: argparse.Namespace) -> dict:
    from torch.utils.data import DataLoader

    from .baselines import MarkovRecommender, PopularityRecommender
    from .collators import DataCollatorWithLeftPadding
    from .evaluation import evaluate_scorer, model_scorer
    from .modeling_seqbert import SeqBertForMaskedBehaviorModeling
    from .prepared import PreparedData, encode_for_next_item, encode_for_pretraining
    from .tokenization_seqbert import BehaviorTokenizer

    data = PreparedData.load(args.data_dir)
    model = SeqBertForMaskedBehaviorModeling.from_pretrained(args.model_dir).eval()
    tokenizer = BehaviorTokenizer.from_pretrained(args.model_dir)
    if tokenizer.items != data.tokenizer.items:
        raise SystemExit(f"{args.model_dir} was trained with a different item vocabulary than {args.data_dir}.")
    max_length = args.max_length or model.config.max_position_embeddings
    rows = encode_for_next_item(data.splits[args.split], tokenizer, max_length)
    loader = DataLoader(rows, batch_size=args.batch_size, collate_fn=DataCollatorWithLeftPadding())
    longest = max(len(row) for row in data.splits["train"]["item_ids"]) + 1
    train_ids = encode_for_pretraining(data.splits["train"], tokenizer, longest)["input_ids"]
    common = {"vocab_size": tokenizer.vocab_size, "num_special_tokens": tokenizer.num_special_tokens}
    scorers = {
        "seqbert": model_scorer(model),
        "popularity": PopularityRecommender(train_ids, **common),
        "markov": MarkovRecommender(train_ids, **common),
    }
    results = {
        name: evaluate_scorer(scorer, loader, num_special_tokens=tokenizer.num_special_tokens, exclude_history=args.exclude_history)
        for name, scorer in scorers.items()
    }
    label = "history removed" if args.exclude_history else "history kept"
    output = {"split": args.split, "ranking": f"full catalog, pessimistic ties, {label}", "metrics": results}
    print(json.dumps(output, indent=2))
    return output


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="seqbert", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--log-level", default="INFO", help="Python logging level.")
    commands = parser.add_subparsers(dest="command", required=True)
    from .demo import add_demo_parser

    add_demo_parser(commands)
    add_prepare_parser(commands)
    add_training_passthrough(commands, "pretrain", "Masked-behavior pretraining on a prepared folder.")
    add_training_passthrough(commands, "finetune", "Purchase-prediction fine-tuning on a prepared folder.")
    add_evaluate_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=args.log_level.upper())
    if args.command in ("pretrain", "finetune"):
        from .training import finetune, pretrain

        module = pretrain if args.command == "pretrain" else finetune
        module.main([*args.options, *extra])
        return 0
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from .data.errors import EventDataError

    try:
        if args.command == "prepare":
            run_prepare(args)
        elif args.command == "evaluate":
            run_evaluate(args)
        elif args.command == "demo":
            from .demo import run_demo

            run_demo(args)
    except (EventDataError, FileNotFoundError) as error:
        print(f"seqbert {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
