"""The documentation: the generated CLI reference, the quickstart and the docs build."""

from __future__ import annotations

import argparse
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from volseg.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def hooks():
    """docs/hooks.py, the mkdocs hook module (docs/ is not a package)."""
    spec = importlib.util.spec_from_file_location("volseg_docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _sections(markdown: str) -> dict[str, str]:
    """Level-2 sections by heading; the text before the first one under ''."""
    sections, heading, lines = {}, "", []
    for line in markdown.splitlines():
        if line.startswith("## "):
            sections[heading] = "\n".join(lines)
            heading, lines = line[3:].strip(), []
        else:
            lines.append(line)
    sections[heading] = "\n".join(lines)
    return sections


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _assert_documents_every_argument(text: str, parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS:
            continue  # the command table; arguments hidden from --help on purpose
        if action.option_strings:
            for option in action.option_strings:
                assert f"`{option}" in text, f"{parser.prog}: {option} is not documented"
        else:
            name = action.metavar or action.dest
            assert f"`{name}" in text, f"{parser.prog}: argument {name} is not documented"


def test_cli_page_documents_every_command_and_option(hooks):
    parser = build_parser()
    rendered = hooks.render_cli_markers((DOCS / "cli.md").read_text(), parser)
    assert "cli-reference" not in rendered
    sections = _sections(rendered)
    # The top of the page documents `volseg` itself and links every sub-command.
    _assert_documents_every_argument(sections[""], parser)
    for name, sub in _subcommands(parser).items():
        assert f"(#volseg-{name})" in sections[""], f"{name} missing from the command table"
        heading = f"volseg {name}"
        assert heading in sections, f"no section for {heading}"
        section = sections[heading]
        assert f"```\n{hooks.usage_line(sub)}\n```" in section
        _assert_documents_every_argument(section, sub)
    headings = [line for line in rendered.splitlines() if line.startswith("## volseg ")]
    assert len(headings) == len(set(headings)), "a command is documented twice"


def test_new_subcommand_and_option_appear_without_editing_the_page(hooks):
    parser = build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    extra = action.add_parser(
        "frobnicate", help="a new command", description="Frobnicate | a <scan> somehow."
    )
    extra.add_argument("target")
    extra.add_argument("--level", type=int, default=3, help="how hard, in [0|1|2|3]")
    extra.add_argument("--debug-dump", help=argparse.SUPPRESS)
    _subcommands(parser)["segment"].add_argument("--new-option", help="added later")

    rendered = hooks.render_cli_markers((DOCS / "cli.md").read_text(), parser)
    sections = _sections(rendered)
    assert "volseg frobnicate" in sections
    _assert_documents_every_argument(sections["volseg frobnicate"], extra)
    assert "Frobnicate \\| a &lt;scan&gt; somehow." in sections["volseg frobnicate"]
    assert "--debug-dump" not in rendered  # hidden from --help, so from the page too
    assert "| `--level LEVEL` | `3` | how hard, in \\[0\\|1\\|2\\|3\\] |" in rendered
    assert "| `--new-option NEW_OPTION` | — | added later |" in sections["volseg segment"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a | b", "a \\| b"),
        ("<scan>_ni.zarr", "&lt;scan&gt;\\_ni.zarr"),
        ("written by `volseg segment`", "written by `volseg segment`"),
        ("R&D *bold*", "R&amp;D \\*bold\\*"),
    ],
)
def test_help_text_is_escaped_for_markdown(hooks, text, expected):
    assert hooks.help_to_markdown(text) == expected


def test_escaped_table_renders_one_cell_per_column(hooks):
    markdown = pytest.importorskip("markdown")
    parser = argparse.ArgumentParser(prog="demo")
    parser.add_argument("--pipe", default="a|b", help="x | y <z> `p|q`")
    html = markdown.markdown(hooks.arguments_table(parser), extensions=["tables"])
    row = html.split("<tbody>")[1]
    assert row.count("<td>") == 6  # two rows (--help, --pipe) of three cells
    assert "x | y &lt;z&gt; <code>p|q</code>" in html


def test_unknown_marker_is_an_error(hooks):
    with pytest.raises(ValueError, match="no-such-command"):
        hooks.render_cli_markers("<!-- cli-reference: no-such-command -->", build_parser())


@pytest.mark.parametrize("name", list(_subcommands(build_parser())))
def test_every_subcommand_help_exits_zero_with_a_description(name, capsys):
    description = _subcommands(build_parser())[name].description
    assert description and description.strip(), f"volseg {name} has no description"
    with pytest.raises(SystemExit) as exit_info:
        main([name, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: volseg {name}")
    # argparse re-wraps the description (also after hyphens): compare without whitespace.
    assert "".join(description.split()) in "".join(out.split())


def test_readme_commands_appear_verbatim_in_quickstart():
    readme = (ROOT / "README.md").read_text()
    quickstart = (DOCS / "quickstart.md").read_text()
    commands = [
        block.strip()
        for block in re.findall(r"```bash\n(.*?)```", readme, flags=re.DOTALL)
        if block.startswith("python3 -m venv")
    ]
    assert len(commands) == 2, "expected the README's two install commands"
    for command in commands:
        assert f"```bash\n{command}\n```" in quickstart


def test_tiling_figure_is_drawn_and_its_caption_matches_the_grid(hooks):
    from volseg.tiling import plane_grid, reflected_read_plan

    png = hooks.tiling_figure_png()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    page = " ".join((DOCS / "tiling.md").read_text().split())
    assert hooks.TILING_FIGURE in page
    # The caption quotes the figure's grid; it must follow volseg.tiling if that changes.
    grid = plane_grid((100, 230), tile=64, overlap=0.25)
    halo_end = reflected_read_plan(grid, (0, 100), (0, 112)).x_window[1]
    drawn = (grid.x.stride, grid.x.margin, grid.y.count, grid.x.count, halo_end)
    assert drawn == (48, 8, 3, 5, 152)
    assert "(stride 48, margin 8, 3 × 5 tiles;" in page
    assert "reach to `x = 152`" in page


def _docs_files() -> set[Path]:
    return {p for p in DOCS.rglob("*") if "__pycache__" not in p.parts}


@pytest.mark.slow
def test_docs_build_strict_and_leave_the_tree_alone(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    before = _docs_files()
    site = tmp_path / "site"
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert _docs_files() == before
    assert (site / "img" / "tiling-concepts.png").is_file()
    assert not (site / "hooks.py").exists()
    cli_page = (site / "cli" / "index.html").read_text()
    assert "cli-reference" not in cli_page
    assert "--steps-per-epoch" in cli_page


def test_every_option_has_help_and_demo_epochs_match_the_demo():
    import argparse

    from volseg.cli import build_parser
    from volseg.demo import DEMO_SETTINGS

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [
        f"{name} {action.option_strings}"
        for name, sub in commands.choices.items()
        for action in sub._actions
        if action.option_strings and not action.help
    ]
    assert missing == []
    demo = commands.choices["demo"].parse_args([])
    assert demo.epochs == DEMO_SETTINGS["epochs"]
