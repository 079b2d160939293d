"""Small prepared folders from the synthetic generator, shared by tests that train tiny models."""

from __future__ import annotations

from pathlib import Path

from seqbert.data.synthetic import SyntheticConfig, generate_events, write_events
from seqbert.prepare import PrepareOptions, prepare_file


def prepare_synthetic_temporal(folder: Path, num_users: int, seed: int, num_items: int = 80) -> Path:
    """Write a synthetic log to ``folder`` and prepare it with a temporal split (20 % validation, 20 % test);
    returns the prepared folder."""
    events = write_events(
        generate_events(SyntheticConfig(num_users=num_users, num_items=num_items, seed=seed)), folder / "events.parquet"
    )
    options = PrepareOptions(split="temporal", max_length=16, min_user_events=1, validation_fraction=0.2, test_fraction=0.2)
    prepare_file(events, options, output_dir=folder / "prepared")
    return folder / "prepared"
