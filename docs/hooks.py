"""mkdocs hooks: content generated from the code at build time.

* ``<!-- cli-reference: NAME -->`` markers in a page are replaced by the reference of the
  ``volseg`` command (``NAME = volseg``) or of one sub-command (usage line, description and
  a table of every argument with its default and help text), read from
  ``volseg.cli.build_parser()``. ``<!-- cli-reference: remaining -->`` is replaced by a
  whole section for every sub-command that has no marker of its own on the page, so a new
  sub-command is documented as soon as it is added to the parser.
* ``img/tiling-concepts.png`` (used by ``tiling.md``) is drawn with ``volseg.tiling`` and
  added to the site as a generated file: nothing is written into the docs folder.

Nothing here runs at import time, so tests can import this file and call the functions.
"""

from __future__ import annotations

import argparse
import io
import re

import numpy as np

CLI_MARKER = re.compile(r"<!--\s*cli-reference:\s*([\w-]+)\s*-->")
REMAINING = "remaining"
TILING_FIGURE = "img/tiling-concepts.png"
USAGE_WIDTH = 88

# Markdown that must not be interpreted in plain text. "<", ">" and "&" become entities,
# the rest get a backslash ("|" would otherwise split a table cell).
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_BACKSLASHED = set("\\|*_[]`#")
_CODE_SPAN = re.compile(r"(`[^`\n]+`)")


# ---------------------------------------------------------------------------------------
# CLI reference


def escape_markdown(text: str) -> str:
    """Escape ``text`` so that Markdown shows it literally, also inside a table cell.

    Examples
    --------
    >>> escape_markdown("a | b <scan>_ni.zarr")
    'a \\\\| b &lt;scan&gt;\\\\_ni.zarr'
    """
    out = []
    for char in text:
        if char in _ENTITIES:
            out.append(_ENTITIES[char])
        elif char in _BACKSLASHED:
            out.append("\\" + char)
        else:
            out.append(char)
    return "".join(out)


def code_span(text: str) -> str:
    """``text`` as an inline code span, fenced with more backticks than it contains."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def help_to_markdown(text: str) -> str:
    """Help text as Markdown: `back-quoted` parts stay code, the rest is escaped.

    Help strings are written for a terminal; back quotes are the one piece of markup
    they use (``written by `volseg segment```), so those become code spans.
    """
    text = " ".join(text.split())
    parts = _CODE_SPAN.split(text)
    return "".join(part if _CODE_SPAN.fullmatch(part) else escape_markdown(part) for part in parts)


def _formatter(prog: str) -> argparse.HelpFormatter:
    # A fixed width: the generated page must not depend on the terminal of whoever builds it.
    return argparse.HelpFormatter(prog, width=USAGE_WIDTH, max_help_position=40)


def usage_line(parser: argparse.ArgumentParser) -> str:
    """The usage line of ``parser`` (without the ``usage:`` prefix), wrapped at 88 columns."""
    formatter = _formatter(parser.prog)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, prefix="")
    return formatter.format_help().strip()


def invocations(action: argparse.Action, prog: str) -> list[str]:
    """How an argument is written: ``["scan"]``, ``["-v", "--verbose"]``, ``["--out OUT"]``."""
    formatter = _formatter(prog)
    if not action.option_strings:
        return [formatter._format_args(action, action.dest)]
    if action.nargs == 0:
        return list(action.option_strings)
    args = formatter._format_args(action, action.dest.upper())
    return [f"{option} {args}" for option in action.option_strings]


def default_text(action: argparse.Action) -> str:
    """The default of an argument as Markdown: required, off/on, a value or an em dash."""
    if action.required:
        return "required"
    if isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
        return "—"
    if isinstance(action, argparse._StoreTrueAction):
        return "off"
    if isinstance(action, argparse._StoreFalseAction):
        return "on"
    default = action.default
    if default is None or default == argparse.SUPPRESS:
        return "—"
    if isinstance(default, (list, tuple)):
        return code_span(" ".join(str(value) for value in default))
    return code_span(str(default))


def help_text(action: argparse.Action, prog: str) -> str:
    """The help of an argument with ``%(default)s`` and the like expanded, as Markdown."""
    if not action.help:
        if action.choices is not None and not isinstance(action, argparse._SubParsersAction):
            return "one of " + ", ".join(code_span(str(choice)) for choice in action.choices)
        return ""
    try:
        text = _formatter(prog)._expand_help(action)
    except (KeyError, TypeError, ValueError):
        text = action.help
    return help_to_markdown(text)


def _hidden(action: argparse.Action) -> bool:
    # The sub-command switch gets its own table; help=SUPPRESS hides an argument from --help.
    return isinstance(action, argparse._SubParsersAction) or action.help == argparse.SUPPRESS


def documented_actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every argument of ``parser`` that ``--help`` shows, in the order it shows them.

    Arguments are taken group by group (positional arguments, options, then any group
    added with ``add_argument_group``). The sub-command switch and arguments hidden with
    ``help=argparse.SUPPRESS`` are left out.
    """
    seen: set[int] = set()
    actions = []
    for group in parser._action_groups:
        for action in group._group_actions:
            if _hidden(action) or id(action) in seen:
                continue
            seen.add(id(action))
            actions.append(action)
    for action in parser._actions:  # an argument outside every group, should one appear
        if not _hidden(action) and id(action) not in seen:
            actions.append(action)
    return actions


def arguments_table(parser: argparse.ArgumentParser) -> str:
    """A Markdown table of every argument of ``parser``: how to write it, default, help."""
    rows = ["| argument | default | meaning |", "|---|---|---|"]
    for action in documented_actions(parser):
        written = ", ".join(code_span(text) for text in invocations(action, parser.prog))
        rows.append(f"| {written} | {default_text(action)} | {help_text(action, parser.prog)} |")
    return "\n".join(rows)


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The sub-command parsers of ``parser`` by name (aliases left out), in order."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if all(sub is not other for other in found.values()):
                    found[name] = sub
    return found


def _subcommand_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    helps = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:
                helps[choice.dest] = choice.help or ""
    return helps


def anchor(prog: str) -> str:
    """The heading id mkdocs gives ``## volseg segment``: ``volseg-segment``."""
    return re.sub(r"[^\w-]+", "-", prog.lower()).strip("-")


def commands_table(parser: argparse.ArgumentParser) -> str:
    """A Markdown table of the sub-commands of ``parser`` with their one-line help."""
    helps = _subcommand_help(parser)
    rows = ["| command | what it does |", "|---|---|"]
    for name, sub in subcommands(parser).items():
        link = f"[{code_span(name)}](#{anchor(sub.prog)})"
        rows.append(f"| {link} | {help_to_markdown(helps.get(name, ''))} |")
    return "\n".join(rows)


def command_reference(parser: argparse.ArgumentParser, *, description: bool = True) -> str:
    """Usage, description, arguments and sub-commands of one parser, as Markdown."""
    blocks = [f"```\n{usage_line(parser)}\n```"]
    if description and parser.description:
        blocks.append(help_to_markdown(parser.description))
    blocks.append(arguments_table(parser))
    if subcommands(parser):
        blocks.append(commands_table(parser))
    if parser.epilog:
        blocks.append(help_to_markdown(parser.epilog))
    return "\n\n".join(blocks)


def command_section(parser: argparse.ArgumentParser, level: int = 2) -> str:
    """A whole section, heading included, for a sub-command without hand-written text."""
    heading = "#" * level + " " + parser.prog
    blocks = [heading, command_reference(parser)]
    for sub in subcommands(parser).values():
        blocks.append(command_section(sub, level + 1))
    return "\n\n".join(blocks)


def find_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """``parser`` itself for its own prog name, else the sub-command ``name``."""
    if name == parser.prog:
        return parser
    commands = subcommands(parser)
    if name not in commands:
        known = ", ".join([parser.prog, *commands, REMAINING])
        raise ValueError(f"<!-- cli-reference: {name} -->: no such command; use one of {known}.")
    return commands[name]


def render_cli_markers(markdown: str, parser: argparse.ArgumentParser) -> str:
    """Replace every ``<!-- cli-reference: NAME -->`` marker in ``markdown``.

    Parameters
    ----------
    markdown : str
        Page source.
    parser : argparse.ArgumentParser
        The ``volseg`` parser (``volseg.cli.build_parser()``).

    Returns
    -------
    str
        The page with every marker replaced by generated Markdown. A marker naming a
        command the parser does not have is an error, so a renamed command cannot leave
        a stale section behind.
    """
    named = [m.group(1) for m in CLI_MARKER.finditer(markdown) if m.group(1) != REMAINING]
    for name in named:
        find_parser(parser, name)

    def replace(match: re.Match) -> str:
        name = match.group(1)
        if name == REMAINING:
            rest = [sub for key, sub in subcommands(parser).items() if key not in named]
            return "\n\n".join(command_section(sub) for sub in rest)
        target = find_parser(parser, name)
        # The hand-written text around a named marker already introduces the command.
        return command_reference(target, description=target is parser)

    return CLI_MARKER.sub(replace, markdown)


# ---------------------------------------------------------------------------------------
# Tiling figure


def _texture(shape: tuple[int, int], seed: int = 3) -> np.ndarray:
    """Grain-like grey values, so that mirrored borders are visible as mirror images."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    coarse = ndimage.gaussian_filter(rng.normal(size=shape), 6.0)
    fine = ndimage.gaussian_filter(rng.normal(size=shape), 1.5)
    return coarse / coarse.std() + 0.3 * fine / fine.std()


def tiling_figure_png(
    shape: tuple[int, int] = (100, 230),
    tile: int = 64,
    overlap: float = 0.25,
    block_stop: int = 112,
) -> bytes:
    """Draw the tiling concepts with ``volseg.tiling`` and return the PNG bytes.

    Top: a plane of ``shape`` with the global tile grid, the pixels that tiles read beyond
    the volume border (mirrored with ``reflect_index``), the margin, a block border at
    ``x = block_stop`` and the halo that the block left of it reads
    (``reflected_read_plan``). Bottom left: the Gaussian blend weight of every tile along
    one row and each tile's share of the blended value, ``w / sum(w)``. Bottom right: the
    2D window (``blend_window``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch, Rectangle

    from volseg.tiling import blend_window, plane_grid, reflect_index, reflected_read_plan

    height, width = shape
    grid = plane_grid(shape, tile=tile, overlap=overlap)
    gy, gx = grid.y, grid.x
    y_span = (gy.origin(0), gy.origin(gy.count - 1) + tile)
    x_span = (gx.origin(0), gx.origin(gx.count - 1) + tile)
    y_coords, x_coords = np.arange(*y_span), np.arange(*x_span)
    plane = _texture(shape)
    window_pixels = plane[np.ix_(reflect_index(y_coords, height), reflect_index(x_coords, width))]
    extent = (x_span[0] - 0.5, x_span[1] - 0.5, y_span[1] - 0.5, y_span[0] - 0.5)
    blue, orange, green, vermillion, purple = "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7"
    tile_colours = (blue, orange)

    fig = Figure(figsize=(9.0, 6.6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    spec = fig.add_gridspec(2, 2, width_ratios=(3.3, 1.0), height_ratios=(1.9, 1.0))
    ax = fig.add_subplot(spec[0, 0])
    ax.imshow(window_pixels, cmap="gray", extent=extent, interpolation="nearest")
    # Pixels outside the volume are mirrored copies: wash them out so the border shows.
    inside = np.outer((y_coords >= 0) & (y_coords < height), (x_coords >= 0) & (x_coords < width))
    veil = np.ones(inside.shape + (4,))
    veil[..., 3] = np.where(inside, 0.0, 0.5)
    ax.imshow(veil, extent=extent, interpolation="nearest")
    ax.add_patch(
        Rectangle((-0.5, -0.5), width, height, fill=False, edgecolor="black", linewidth=2.4)
    )
    for ky in range(gy.count):
        for kx in range(gx.count):
            # Neighbouring outlines in two colours, slightly inset, so each tile can be followed.
            inset = 1.5 * ((ky + kx) % 2)
            ax.add_patch(
                Rectangle(
                    (gx.origin(kx) - 0.5 + inset, gy.origin(ky) - 0.5 + inset),
                    tile - 2 * inset,
                    tile - 2 * inset,
                    fill=False,
                    edgecolor=tile_colours[(ky + kx) % 2],
                    linewidth=1.3,
                )
            )
    plan = reflected_read_plan(grid, (0, height), (0, block_stop))
    ax.axvspan(block_stop - 0.5, plan.x_window[1] - 0.5, color=green, alpha=0.3, linewidth=0)
    ax.axvline(block_stop - 0.5, color=vermillion, linestyle="--", linewidth=2.2)
    label_style = {"ha": "center", "va": "center", "fontsize": 11, "fontweight": "bold"}
    ax.text(block_stop / 2, height / 2, "block A", color="white", **label_style)
    ax.text((plan.x_window[1] + width) / 2, height / 2, "block B", color="white", **label_style)
    ax.annotate(
        f"margin: tile (0, 0) starts\n{gx.margin} px before the border",
        xy=(gx.origin(0) - 0.5 + gx.margin / 2, 24),
        xytext=(14, 24),
        va="center",
        color=purple,
        fontsize=8.5,
        fontweight="bold",
        bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none", "pad": 1.5},
        arrowprops={"arrowstyle": "->", "color": purple, "linewidth": 1.6},
    )
    ax.set_xlim(x_span[0] - 0.5, x_span[1] - 0.5)
    ax.set_ylim(y_span[1] - 0.5, y_span[0] - 0.5)
    ax.set_ylabel("y (global pixel)")
    ax.set_title(
        f"{height}×{width} plane, tile {tile}, overlap {overlap}: "
        f"stride {gx.stride}, margin {gx.margin}, {gy.count}×{gx.count} tiles",
        fontsize=10,
    )

    legend_ax = fig.add_subplot(spec[0, 1])
    legend_ax.axis("off")
    legend_ax.legend(
        handles=[
            Line2D([], [], color="black", linewidth=2.4, label="volume border"),
            Patch(facecolor="0.9", edgecolor="0.6", label="outside: mirrored\n(numpy reflect)"),
            Line2D([], [], color=blue, linewidth=1.3, label="tiles of the global grid"),
            Line2D([], [], color=orange, linewidth=1.3, label="(neighbours alternate)"),
            Line2D([], [], color=vermillion, linestyle="--", linewidth=2.2, label="block border"),
            Patch(facecolor=green, alpha=0.3, label="halo: real data that\nblock A also reads"),
        ],
        loc="center left",
        fontsize=8.5,
        frameon=False,
    )

    profiles = fig.add_subplot(spec[1, 0], sharex=ax)
    window = blend_window(tile, "gaussian")
    row = window[tile // 2].astype(np.float64)
    weights = np.zeros((gx.count, x_coords.size))
    for kx in range(gx.count):
        start = gx.origin(kx) - x_span[0]
        weights[kx, start : start + tile] = row
    share = weights / weights.sum(axis=0)
    for kx in range(gx.count):
        colour = tile_colours[kx % 2]
        profiles.plot(x_coords, weights[kx], color=colour, linewidth=1.0, linestyle=":")
        profiles.plot(x_coords, share[kx], color=colour, linewidth=1.8)
    for start, stop in ((x_span[0], 0), (width, x_span[1])):
        profiles.axvspan(start - 0.5, stop - 0.5, color="0.88", linewidth=0)
    profiles.axvline(block_stop - 0.5, color=vermillion, linestyle="--", linewidth=1.8)
    profiles.set_ylim(0, 1.08)
    profiles.set_ylabel("weight along a row")
    profiles.set_xlabel("x (global pixel); grey: outside the volume")
    profiles.legend(
        handles=[
            Line2D([], [], color="0.3", linestyle=":", label="blend window w of each tile"),
            Line2D([], [], color="0.3", linewidth=1.8, label="its share w / sum(w)"),
        ],
        loc="lower right",
        fontsize=7.5,
        framealpha=0.9,
    )

    window_ax = fig.add_subplot(spec[1, 1])
    image = window_ax.imshow(window, cmap="cividis", vmin=0, vmax=1)
    window_ax.set_title(f"gaussian window, σ = {0.125 * tile:g} px", fontsize=9)
    window_ax.set_xticks([0, tile - 1])
    window_ax.set_yticks([0, tile - 1])
    fig.colorbar(image, ax=window_ax, shrink=0.8)

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------
# mkdocs events


def on_files(files, config):
    """Add the tiling figure to the site as a generated file (never written to docs/)."""
    from mkdocs.structure.files import File

    files.append(File.generated(config, TILING_FIGURE, content=tiling_figure_png()))
    return files


def on_page_markdown(markdown, page, config, files):
    """Replace the CLI reference markers of any page with text generated from the parser."""
    if not CLI_MARKER.search(markdown):
        return markdown
    from volseg.cli import build_parser

    return render_cli_markers(markdown, build_parser())
