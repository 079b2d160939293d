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
