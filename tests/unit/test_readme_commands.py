"""The README's commands exist: every `make <target>` is a Makefile target and every
`kuailv <subcommand>` is a CLI subcommand, so the docs cannot silently rot."""

from __future__ import annotations

import re
from pathlib import Path

from cli.main import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "docs" / "flink.md", ROOT / "infra" / "README.md"]


def _makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*):", (ROOT / "Makefile").read_text(), flags=re.M))


def _cli_subcommands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return set(sub.choices)


def test_every_make_target_in_the_docs_exists() -> None:
    targets = _makefile_targets()
    for doc in DOCS:
        for target in re.findall(r"\bmake ([a-z][\w-]*)", doc.read_text()):
            assert target in targets, f"{doc.name} mentions `make {target}`, which the Makefile lacks"


def test_every_kuailv_subcommand_in_the_docs_exists() -> None:
    subcommands = _cli_subcommands()
    for doc in DOCS:
        for sub in re.findall(r"(?:bin/|\$ |`)kuailv (?:--profile \w+ )?([a-z][\w-]*)", doc.read_text()):
            assert sub in subcommands, f"{doc.name} mentions `kuailv {sub}`, which the CLI lacks"


def test_the_ci_script_runs_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()
