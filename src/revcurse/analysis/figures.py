"""The analysis's figures: lens.png, trace.png, probe.png, assoc.png and roles.png.

    revcurse analyze runs/demo-20261126-093000   # all four land in the new run directory

Files only (matplotlib's Agg backend), small enough to sit beside the README's text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from revcurse.analysis.roles import Curves
from revcurse.analysis.tracing import POSITIONS
from revcurse.lm.hooks import KINDS
from revcurse.results import pyplot

CELL_COLORS = {"p2d": "tab:blue", "d2p": "tab:orange", "both": "tab:green"}


@contextmanager
def small_figure(path: Path, title: str, legend_size: int = 7) -> Iterator[Any]:
    """One axes to draw on; titled, legended and saved to `path` when the block ends."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))  # fits beside the text in a README column
    yield ax
    ax.set_title(title)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def layer_axis(ax: Any, curves: dict[Any, np.ndarray]) -> None:
    """x = the residual stream after each layer, for curves with one value per layer."""
    ax.set_xticks(range(len(next(iter(curves.values())))))
    ax.set_xlabel("residual stream after layer (0 = embeddings)")


def plot_lens(curves: dict[tuple[str, str], np.ndarray], path: Path) -> None:
    with small_figure(path, "Logit lens") as ax:
        for (group, rel), curve in curves.items():
            style = "-" if rel == "same" else "--"
            ax.plot(curve, style, marker="o", color=CELL_COLORS[group], label=f"{group} {rel}")
        layer_axis(ax, curves)
        ax.set_ylabel("p(target), last prompt position")
        ax.set_ylim(0, 1)


def plot_trace(
    grids: dict[tuple[str, str, str], np.ndarray],
    cells: Sequence[tuple[str, str]],
    title: str,
    path: Path,
) -> None:
    """Kinds down, cells across; one colour scale for all panels, so a missing site shows
    as a blank panel rather than as noise stretched to fill the scale."""
    plt = pyplot()
    top = max(float(np.nanmax(g)) for g in grids.values())
    top = top if top > 0 else 1.0
    layers = next(iter(grids.values())).shape[0]
    fig, axes = plt.subplots(
        len(KINDS),
        len(cells),
        figsize=(1.6 * len(cells) + 1.2, 1.0 + 0.9 * len(KINDS) * max(1.0, layers / 6)),
        squeeze=False,
        sharex=True,
    )
    image = None
    for row, kind in enumerate(KINDS):
        for col, (group, rel) in enumerate(cells):
            ax = axes[row][col]
            image = ax.imshow(
                grids[(group, rel, kind)],
                aspect="auto",
                origin="lower",
                vmin=0,
                vmax=top,
                cmap="Purples",
            )
            if row == 0:
                ax.set_title(f"{group} {rel}", fontsize=8)
            if col == 0:
                ax.set_ylabel(f"{kind}\nlayer", fontsize=8)
            ax.set_yticks(range(layers) if layers <= 6 else range(0, layers, max(1, layers // 5)))
            ax.tick_params(labelsize=6)
            ax.set_xticks(range(len(POSITIONS)))
            ax.set_xticklabels(POSITIONS if row == len(KINDS) - 1 else [], rotation=90)
    fig.suptitle(title, fontsize=9)
    fig.colorbar(image, ax=axes, shrink=0.8, label="p(target) restored - corrupted")
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def plot_probe(
    curves: dict[tuple[str, str, str], np.ndarray], chance: dict[str, float], path: Path
) -> None:
    if not curves:  # no `both` facts to train on
        return
    with small_figure(path, "Probe: does B's representation carry A?", legend_size=6) as ax:
        for (group, rel, where), curve in curves.items():
            style = "-" if where == "subject" else ":"
            label = f"{group} ({rel}), {'description end' if where == 'subject' else 'prompt end'}"
            ax.plot(curve, style, marker="o", color=CELL_COLORS[group], label=label)
        for group, level in chance.items():
            ax.axhline(level, color=CELL_COLORS[group], lw=0.8, alpha=0.5)
        layer_axis(ax, curves)
        ax.set_ylabel("name-bit accuracy (lines: chance)")


def plot_assoc(bars: dict[tuple[str, str], tuple[float, float]], path: Path) -> None:
    with small_figure(path, "Weight-level association") as ax:
        x = np.arange(len(bars))
        ax.bar(x - 0.2, [own for own, _ in bars.values()], 0.4, label="own pair")
        ax.bar(x + 0.2, [other for _, other in bars.values()], 0.4, label="random pair")
        ax.set_xticks(x, [f"{g}\n{r}" for g, r in bars], fontsize=7)
        ax.axhline(0, color="black", lw=0.5)
        ax.set_ylabel("centred logit, one-token input")


def plot_roles(curves: dict[str, Curves], path: Path) -> None:
    """One panel per model: each site's role_cosine (solid) and role_cosine_other (dashed)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.2), squeeze=False)
    for ax, (model, by_group) in zip(axes[0], curves.items(), strict=True):
        for group, by_site in by_group.items():
            sites = list(by_site)
            own, other = zip(*by_site.values(), strict=True)
            ax.plot(sites, own, "-", marker="o", color=CELL_COLORS[group], label=f"{group}")
            ax.plot(sites, other, "--", color=CELL_COLORS[group], alpha=0.6)
        ax.set_title(model, fontsize=9)
        ax.set_ylim(-0.1, 1.05)
        ax.tick_params(axis="x", labelsize=7, rotation=45)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("cosine, subject vs object\n(dashed: another entity)")
    fig.suptitle("Is an entity the same as subject and as object?", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
