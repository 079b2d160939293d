"""Every ```bash and ```python block of README.md and docs/*.md runs as written, or is marked.

Convention (also stated in docs/README.md): a block is run unless the line just before its opening fence is
one of these markers:

- ``<!-- needs: data -->``: it needs the shared data sets (``../shared/data/...``), your own data, a trained
  model or a long run;
- ``<!-- needs: gpu -->``: it needs one or more GPUs;
- ``<!-- needs: ci -->``: the README Quickstart; its test command must be the one ``.ci/run`` runs.

How blocks are run. Each file gets its own temporary working directory holding a small synthetic log
(``events.csv`` in canonical columns, ``retail_events.csv`` with other column and event names) and tiny
random model folders at ``runs/demo/seqbert-pretrained`` and ``runs/demo/seqbert-purchase``.

- ```python blocks are executed in order, in one namespace per file. Marked ones are only compiled.
- In unmarked ```bash blocks every command is run: ``seqbert prepare``, ``seqbert export`` and ``seqbert explain``
  through the CLI; any other command there fails the test (mark the block instead).
- In marked ```bash blocks, every ``seqbert ...``, ``accelerate launch ... -m seqbert.training.*``,
  ``torchrun ... -m seqbert.training.*`` and ``python scripts/<name>.py ...`` command has its options parsed
  (an unknown or malformed flag fails) but is not run; other commands (``curl``) are skipped.

Blocks in other languages (``yaml``, diagrams) are not run. Relative links are checked too.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from transformers import HfArgumentParser

from seqbert import cli
from seqbert.data.synthetic import SyntheticConfig, generate_events, write_events
from seqbert.training.arguments import FinetuneArguments, ModelArguments, PretrainArguments, TrainingArguments

from .script_modules import load_script
from .test_inference import build_model_folders

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MARKER = re.compile(r"^<!--\s*needs:\s*(data|gpu|ci)\s*-->\s*$")
DEMO_ITEMS = [f"i{i:05d}" for i in range(100)]
RUN_COMMANDS = {("seqbert", "prepare"), ("seqbert", "export"), ("seqbert", "explain")}
TRAINING_MODULES = {
    "seqbert.training.pretrain": (TrainingArguments, ModelArguments, PretrainArguments),
    "seqbert.training.finetune": (TrainingArguments, ModelArguments, FinetuneArguments),
}


def code_blocks(path: Path) -> list[tuple[str, str | None, str]]:
    """(language, marker or None, code) of every fenced block, in order."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i, previous = [], 0, ""
    while i < len(lines):
        opening = re.match(r"^```(\w*)\s*$", lines[i])
        if opening is None:
            if lines[i].strip():
                previous = lines[i]
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        marker = MARKER.match(previous)
        blocks.append((opening.group(1), marker.group(1) if marker else None, "\n".join(lines[i + 1 : end]) + "\n"))
        previous, i = "", end + 1
    return blocks


def shell_commands(block: str) -> list[list[str]]:
    joined = re.sub(r"\\\n\s*", " ", block)
    commands = []
    for line in joined.splitlines():
        for part in re.split(r"\s&&\s", line):
            words = shlex.split(part, comments=True)
            while words and re.match(r"^[A-Z_]+=", words[0]):  # VAR=value prefixes
                words = words[1:]
            if words:
                commands.append(words)
    return commands


class _Parsed(Exception):
    pass


def check_script_flags(name: str, argv: list[str], monkeypatch) -> None:
    """Parse ``scripts/<name>.py``'s options with its own parser, stopping before it does anything else."""

    def parse_only(parser, args=None, namespace=None):
        _, extra = parser.parse_known_args(args, namespace)
        assert not extra, f"scripts/{name}.py: unknown options {extra}"
        raise _Parsed

    module = load_script(name)
    with monkeypatch.context() as patch:
        patch.setattr(argparse.ArgumentParser, "parse_args", parse_only)
        with pytest.raises(_Parsed):
            module.parse_args(argv)


def check_training_flags(module: str, argv: list[str]) -> None:
    _, extra = HfArgumentParser(TRAINING_MODULES[module]).parse_known_args(argv)
    assert not extra, f"{module}: unknown options {extra}"


def check_flags(words: list[str], monkeypatch) -> bool:
    """Parse one command's options without running it; False for commands this test does not know."""
    program = Path(words[0]).name
    if program == "seqbert":
        if words[1] in ("pretrain", "finetune"):
            check_training_flags(f"seqbert.training.{words[1]}", words[2:])
        else:
            cli.build_parser().parse_args(words[1:])
        return True
    if program in ("accelerate", "torchrun"):
        module = words[words.index("-m") + 1]
        check_training_flags(module, words[words.index("-m") + 2 :])
        return True
    if program in ("python", "python3") and words[1].startswith("scripts/"):
        check_script_flags(Path(words[1]).stem, words[2:], monkeypatch)
        return True
    return False


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("docs_workspace")
    pretrained, classifier = build_model_folders(root / "build", items=DEMO_ITEMS)
    demo = root / "base" / "runs" / "demo"
    demo.mkdir(parents=True)
    shutil.move(str(pretrained), demo / "seqbert-pretrained")
    shutil.move(str(classifier), demo / "seqbert-purchase")
    events = generate_events(SyntheticConfig(num_users=150, num_items=60, seed=3))
    write_events(events, root / "base" / "events.csv")
    names = {"user_id": "visitorid", "item_id": "itemid", "event_type": "event"}
    retail = events.rename_columns([names.get(name, name) for name in events.column_names])
    kinds = retail.column("event").to_pylist()
    retail = retail.set_column(
        retail.column_names.index("event"), "event", pa.array(["transaction" if k == "purchase" else k for k in kinds])
    )
    pacsv.write_csv(retail, root / "base" / "retail_events.csv")
    return root / "base"


def test_every_guide_exists_and_has_code():
    names = {path.name for path in DOCS}
    for name in ("README.md", "data.md", "training.md", "purchase-and-click.md", "using-and-serving.md", "explaining.md",
                 "scaling.md", "evaluation.md", "benchmarks.md"):
        assert name in names, f"docs/{name} is missing"
    for path in PAGES:
        if path.name != "README.md" or path == README:
            assert any(language in ("bash", "python") for language, _, _ in code_blocks(path)), path


def test_sizes():
    assert README.stat().st_size <= 12_000
    assert (ROOT / "BENCHMARKS.md").stat().st_size <= 40_000


@pytest.mark.parametrize("page", [*PAGES, ROOT / "BENCHMARKS.md"], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
    text = page.read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+://|^#|^mailto:", target):
            continue
        path = (page.parent / target.split("#", 1)[0]).resolve()
        assert path.exists(), f"{page.name}: broken link {target}"


def test_quickstart_is_what_ci_runs(monkeypatch):
    marked = [code for language, marker, code in code_blocks(README) if marker == "ci"]
    assert len(marked) == 1, "README.md needs exactly one <!-- needs: ci --> block (the Quickstart)"
    lines = marked[0].strip().splitlines()
    assert lines == [
        "bash scripts/setup.sh && .venv/bin/seqbert demo",
        "bash scripts/setup.sh && .venv/bin/python -m pytest -q -p no:cacheprovider",
    ]
    assert lines[1] in (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    check_flags([".venv/bin/seqbert", "demo"], monkeypatch)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_code_blocks_run(page, workspace, tmp_path, monkeypatch, capsys):
    blocks = [block for block in code_blocks(page) if block[0] in ("bash", "python")]
    if any(language == "bash" and marker is None and " export " in f" {code}" for language, marker, code in blocks):
        pytest.importorskip("onnxruntime", reason="the ONNX example needs the `export` extra")
    work = tmp_path / "work"
    shutil.copytree(workspace, work)
    monkeypatch.chdir(work)
    namespace: dict = {"__name__": "__docs__"}
    ran = parsed = 0
    for language, marker, code in blocks:
        if marker == "ci":
            continue
        if language == "python":
            compiled = compile(code, f"{page.name} (block)", "exec")
            if marker is None:
                exec(compiled, namespace)
                ran += 1
            continue
        for words in shell_commands(code):
            if marker is not None:
                parsed += check_flags(words, monkeypatch)
                continue
            assert (Path(words[0]).name, words[1] if len(words) > 1 else "") in RUN_COMMANDS, (
                f"{page.name}: `{' '.join(words[:3])} ...` is in an unmarked bash block but is not run by this "
                "test; mark the block with <!-- needs: data --> or <!-- needs: gpu -->"
            )
            assert cli.main(words[1:]) == 0, words
            ran += 1
    assert ran + parsed > 0 or not blocks, f"{page.name}: no block was run or checked"
    if page.name == "explaining.md":
        assert (work / "why.png").is_file() and (work / "why-purchase.png").is_file()  # seqbert explain's timelines
    if page.name == "using-and-serving.md":
        assert (work / "model.onnx").is_file() and (work / "items.parquet").is_file()
        output = capsys.readouterr().out
        assert "i000" in output and "event(s) with items unknown to the model" in output
        assert namespace["result"].unknown_events == 1
        assert namespace["shortlist"].unknown_candidates == ["not-in-catalog"]
