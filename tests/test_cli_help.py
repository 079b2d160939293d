"""`seqbert <command> --help` states the default of every option (issue 21)."""

from __future__ import annotations

import argparse

from seqbert import cli


def test_every_option_of_every_command_states_its_default():
    parser = cli.build_parser()
    (commands,) = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    for name, subparser in commands.choices.items():
        for action in subparser._actions:
            if not action.option_strings or action.help in (None, argparse.SUPPRESS) or action.required:
                continue
            if isinstance(action, argparse._HelpAction):
                continue
            assert "default" in action.help.lower(), f"seqbert {name} {action.option_strings[0]}: {action.help}"
    text = commands.choices["prepare"].format_help()
    assert "(default: leave_one_out)" in text and "(default: off)" in text


def test_prepare_prints_the_drop_report_once(tmp_path):
    import subprocess
    import sys

    rows = ["user_id,item_id,event_type,timestamp"]
    rows += [f"u{u},i{(u + k) % 7},view,{1_700_000_000 + 60 * k}" for u in range(12) for k in range(4)]
    rows += ["u99,i1,teleport,1700000000"]  # an unknown event type, dropped and counted
    (tmp_path / "log.csv").write_text("\n".join(rows) + "\n")
    command = [sys.executable, "-m", "seqbert.cli", "prepare", str(tmp_path / "log.csv"), "--output-dir", str(tmp_path / "out"),
               "--unknown-events", "drop"]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    output = result.stdout + result.stderr
    assert output.count("dropped (total)") == 1, output
    assert "drop report: kept 48 of 49 rows (dropped: unknown_event_type 1)" in output
