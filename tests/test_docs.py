"""The README and docs/: every ``tlbench`` command shown parses with the real parser, every relative link and
anchor resolves, the README stays short and links every page."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tlbench.benchmarks.cli import UsageError, build_parser

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w-]*)\n(.*?)^```[ \t]*$", re.M | re.S)
INLINE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$", re.M)
#: fenced blocks in these languages are synopses (``[--flag N]``), not commands
SYNOPSIS_LANGUAGES = {"text"}


def prose(text: str) -> str:
    """``text`` without its fenced code blocks."""
    return FENCE.sub("", text)


def command_args(line: str) -> list[str] | None:
    """The ``tlbench`` arguments of one shell line (``tlbench ...``, ``.venv/bin/tlbench ...``, or ``make bench
    ARGS="..."``, which runs ``tlbench run``), ``None`` for any other line."""
    words = shlex.split(line.strip().removeprefix("$ "), comments=True)
    if not words:
        return None
    if words[0] == "tlbench" or words[0].endswith("/tlbench"):
        return words[1:]
    if words[:2] == ["make", "bench"]:
        extra = [w.removeprefix("ARGS=") for w in words[2:] if w.startswith("ARGS=")]
        return ["run", *shlex.split(extra[0])] if extra else ["run"]
    return None


def shown_commands(page: Path) -> list[list[str]]:
    """Every ``tlbench`` command of ``page``: lines of its fenced and indented code blocks, its inline code spans."""
    text = page.read_text()
    found = []
    for language, body in FENCE.findall(text):
        if language in SYNOPSIS_LANGUAGES:
            continue
        for line in body.replace("\\\n", " ").splitlines():
            args = command_args(line)
            if args is not None:
                found.append(args)
    for line in re.findall(r"^ {4,}(\S.*)$", prose(text), flags=re.M):  # indented code blocks
        if re.match(r"(\S*/)?tlbench ", line):
            found.append(command_args(line))
    for span in INLINE.findall(prose(text)):
        if re.match(r"(\S*/)?tlbench |make bench ARGS=", span):
            args = command_args(span)
            if args is not None:
                found.append(args)
    return found


def parses(args: list[str]) -> None:
    """Parse ``args`` as ``tlbench`` does (argparse level: subcommands, flags, choices, types); nothing runs."""
    namespace = build_parser().parse_args(args)
    assert namespace.command is not None, f"no subcommand in: tlbench {shlex.join(args)}"


ALL_COMMANDS = [(page.relative_to(ROOT).as_posix(), args) for page in PAGES for args in shown_commands(page)]


@pytest.mark.parametrize(
    "page, args", ALL_COMMANDS, ids=[f"{page}: tlbench {shlex.join(args)}"[:120] for page, args in ALL_COMMANDS]
)
def test_every_command_shown_parses(page: str, args: list[str]) -> None:
    try:
        parses(args)
    except UsageError as exc:
        pytest.fail(f"{page}: `tlbench {shlex.join(args)}` does not parse: {exc}")


def test_the_commands_are_found_and_a_wrong_one_would_fail() -> None:
    readme = shown_commands(README)
    guide = shown_commands(ROOT / "docs" / "user-guide.md")
    assert ["export", "mlflow", "results/default", "--tracking-uri", "sqlite:///mlflow.db"] in guide
    assert ["run", "--dataset", "folder:/data/chest_xray"] in readme
    assert ["run", "--seeds", "0,1"] in readme  # make bench ARGS="..."
    vgg16 = "run --backends keras,torchvision,timm --models vgg16 --weights vgg16-hed --head fcn --image-size 32"
    assert vgg16.split() in shown_commands(ROOT / "docs" / "architecture.md")  # an indented code block
    assert len(ALL_COMMANDS) >= 20
    for wrong in (["run", "--no-such-flag"], ["export", "wandb", "results/x"], ["run", "--epochs", "five"]):
        with pytest.raises(UsageError):
            parses(wrong)


def slugs(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of ``markdown`` (lower case, punctuation dropped, spaces to hyphens,
    ``-1``, ``-2`` for repeats)."""
    seen: dict[str, int] = {}
    anchors = set()
    for _, title in HEADING.findall(prose(markdown)):
        slug = re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def links(page: Path) -> list[str]:
    """Link and image targets of ``page`` outside code."""
    return LINK.findall(INLINE.sub("", prose(page.read_text())))


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(ROOT).as_posix() for p in PAGES])
def test_every_relative_link_and_anchor_resolves(page: Path) -> None:
    broken = []
    for target in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ... (not checked offline)
            continue
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no such file")
        elif anchor and resolved.suffix == ".md" and anchor not in slugs(resolved.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {resolved.relative_to(ROOT)}")
    assert broken == []


def test_the_checks_see_links_and_anchors() -> None:
    assert slugs("# A\n## Same weights, same head\n## What `x` × y — z?\n## A\n") == {
        "a",
        "same-weights-same-head",
        "what-x--y--z",
        "a-1",
    }
    guide = links(ROOT / "docs" / "user-guide.md")
    assert "architecture.md#same-weights-same-head" in guide and "../README.md" in guide


def test_the_readme_is_short_and_links_every_docs_page() -> None:
    text = README.read_text()
    assert len(text) <= 10_000
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README)}
    assert {p.resolve() for p in PAGES[1:]} <= linked
