"""The README section "## Using a trained model" runs as written.

Its ```python blocks are executed in order, in one namespace, in a temporary working directory where
tiny random models are saved at the paths the snippets use (``runs/demo/seqbert-pretrained`` and
``runs/demo/seqbert-purchase``). In its ```bash blocks, every ``seqbert export`` command is run through the
CLI; ``seqbert serve`` / ``seqbert push`` commands are parsed (flags checked) but not run.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import pytest

from seqbert import cli

from .test_inference import build_model_folders

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Using a trained model"
DEMO_ITEMS = [f"i{i:05d}" for i in range(100)]


def section_blocks() -> list[tuple[str, str]]:
    text = README.read_text(encoding="utf-8")
    assert SECTION in text, f"README.md has no {SECTION!r} section"
    section = text.split(SECTION, 1)[1]
    section = re.split(r"^## ", section, maxsplit=1, flags=re.MULTILINE)[0]
    return re.findall(r"^```(\w+)\n(.*?)^```", section, flags=re.MULTILINE | re.DOTALL)


def shell_commands(block: str) -> list[list[str]]:
    joined = re.sub(r"\\\n\s*", " ", block)
    commands = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value prefixes
            words = words[1:]
        if words:
            commands.append(words)
    return commands


def test_section_has_python_and_cli_examples():
    languages = [language for language, _ in section_blocks()]
    assert languages.count("python") >= 2 and "bash" in languages


def test_readme_examples_run(tmp_path, monkeypatch, capsys):
    pytest.importorskip("onnxruntime", reason="the README's ONNX example needs the `export` extra")
    pretrained, classifier = build_model_folders(tmp_path / "build", items=DEMO_ITEMS)
    demo = tmp_path / "work" / "runs" / "demo"
    demo.mkdir(parents=True)
    shutil.move(str(pretrained), demo / "seqbert-pretrained")
    shutil.move(str(classifier), demo / "seqbert-purchase")
    monkeypatch.chdir(tmp_path / "work")

    namespace: dict = {"__name__": "__readme__"}
    ran_python = ran_cli = parsed_only = 0
    for language, code in section_blocks():
        if language == "python":
            exec(compile(code, f"README.md ({SECTION})", "exec"), namespace)
            ran_python += 1
        elif language == "bash":
            for words in shell_commands(code):
                if words[0] != "seqbert":
                    continue  # curl etc.
                if words[1] == "export":
                    assert cli.main(words[1:]) == 0, words
                    ran_cli += 1
                else:
                    cli.build_parser().parse_args(words[1:])  # serve / push: valid flags, not run
                    parsed_only += 1
    assert ran_python >= 3 and ran_cli == 2 and parsed_only == 2
    assert (tmp_path / "work" / "model.onnx").is_file() and (tmp_path / "work" / "items.parquet").is_file()
    output = capsys.readouterr().out
    assert "i000" in output and "event(s) with items unknown to the model" in output
    assert namespace["result"].unknown_events == 1
    assert namespace["shortlist"].unknown_candidates == ["not-in-catalog"]
