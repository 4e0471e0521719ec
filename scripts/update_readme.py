"""Put a real run's results into README.md and docs/ (numbers are regenerated, never typed).

    python scripts/update_readme.py runs/demo-20261126-093000
    python scripts/update_readme.py --analyze runs/analyze-20261126-093500
    python scripts/update_readme.py --compare runs/compare-20261126-094000 [BLOCK]
    python scripts/update_readme.py --compare-brief runs/compare-rt1000 BLOCK
    python scripts/update_readme.py --berglund runs/berglund-smollm2
    python scripts/update_readme.py --teach runs/teach-smollm2 BLOCK
    python scripts/update_readme.py --roles runs/analyze-kept BLOCK
    python scripts/update_readme.py --answers runs/analyze-compare BLOCK

The first replaces the text between `<!-- results:demo:start -->` and
`<!-- results:demo:end -->` with the demo run's table.txt and the command that reproduces
it. The second replaces the text between `<!-- results:analyze:start -->` and
`<!-- results:analyze:end -->` with sentences phrased from the analysis run's results.json
(the wording follows the numbers: where the trace peaks, whether the probe beats chance,
whether the reverse association differs from random) and copies its trace.png to
docs/analyze_trace.png. The third fills `<!-- results:BLOCK:* -->` (default: compare) with
the compare run's one-way rows (exact match and rank accuracy per method), its
remedy-specific rows and costs, and copies its chart.png to docs/BLOCK_chart.png (and its
efficiency.png to docs/BLOCK_efficiency.png);
--compare-brief puts only the command and the one-way rows into BLOCK. The last fills
`<!-- results:berglund-smollm2:* -->` with a `revcurse berglund` run's table
(benchmarks/berglund_smollm2.py --keep DIR); --teach fills BLOCK with a `revcurse teach`
run's before/after table and the command that made it; --roles fills BLOCK with a
`revcurse analyze` run of a compare's kept models: its table and its roles.png (copied to
docs/BLOCK.png); --answers fills BLOCK with what a compare run's one-way reverse answers
are, from `revcurse analyze` on it, beside the compare's exact match.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import textwrap
from pathlib import Path
from typing import Any

from revcurse.facts import ONE_WAY

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TRACE_FIGURE = "docs/analyze_trace.png"
KINDS = ("hidden", "mlp", "attn")  # the states causal tracing restores
# A p(answer) or an effect on it below this is called nothing (probabilities are in [0, 1]).
NEGLIGIBLE_EFFECT = 0.1
WIDTH = 92  # the README's prose is wrapped at about this width


def replace_block(name: str, block: str) -> None:
    """Put `block` between the `<!-- results:NAME:start/end -->` markers of README.md and of
    every docs page that holds them (a page in docs/ finds the figures beside it)."""
    start, end = f"<!-- results:{name}:start -->", f"<!-- results:{name}:end -->"
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    found = False
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text()
        if pattern.search(text):
            here = block.replace("](docs/", "](") if page.parent.name == "docs" else block
            page.write_text(pattern.sub(lambda _, here=here: f"{start}\n{here}\n{end}", text))
            found = True
    if not found:
        sys.exit(f"{README} and docs/: no results:{name} markers")


def table_block(run_dir: Path, command: str) -> str:
    """A run's table.txt, the command that reproduces it and its time (demo, berglund)."""
    results = json.loads((run_dir / "results.json").read_text())
    table = (run_dir / "table.txt").read_text().rstrip()
    train, evaluation = results["train"]["seconds"], results["eval"]["seconds"]
    return (
        f"```\n$ {command}\n{table}\n```\n"
        f"Train {train:.0f} s + evaluation {evaluation:.0f} s = {train + evaluation:.0f} s "
        f"on 2 CPU cores (torch {results['versions']['torch']}), model loading aside."
    )


# ---------------------------------------------------------------------------- analysis


class Rows:
    """An analysis run's results.json rows, by (group, direction, metric)."""

    def __init__(self, rows: list[dict[str, Any]]):
        self.by_key = {(r["group"], r["direction"], r["metric"]): r for r in rows}

    def get(self, group: str, rel: str, metric: str) -> float | None:
        row = self.by_key.get((group, rel, metric))
        return None if row is None else row["value"]

    def __call__(self, group: str, rel: str, metric: str) -> float:
        return self.by_key[(group, rel, metric)]["value"]

    def with_ci(self, group: str, rel: str, metric: str, sign: str = "") -> str:
        row = self.by_key[(group, rel, metric)]
        text = f"{row['value']:{sign}.2f}"
        if row["ci_low"] is not None:
            text += f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"
        return text

    def above(self, group: str, rel: str, metric: str, level: float) -> bool:
        """The 95% interval (or the value, when it has none) lies wholly above `level`."""
        row = self.by_key[(group, rel, metric)]
        return (row["ci_low"] if row["ci_low"] is not None else row["value"]) > level

    def metrics(self, pattern: str) -> list[str]:
        """The distinct metric names that match `pattern`, in results order."""
        return list(dict.fromkeys(m for *_, m in self.by_key if re.fullmatch(pattern, m)))


PLACES = {  # results.json's "positions", as phrases
    "before subject": "the tokens before the subject",
    "subject first": "the subject's first token",
    "subject middle": "the subject's middle tokens",
    "subject last": "the subject's last token",
    "after subject": "the token after the subject",
    "further tokens": "the tokens after that",
    "last token": "the last prompt position",
}
# The probe reads b2a prompts: "reverse" for p2d facts, "same" for d2p ones.
PROBED = {"p2d": "reverse", "d2p": "same"}
WAY = {("p2d", "same"): "A -> B", ("p2d", "reverse"): "B -> A"}
WAY |= {("d2p", "same"): "B -> A", ("d2p", "reverse"): "A -> B"}


def listing(parts: list[str], conjunction: str = "and") -> str:
    return parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} {conjunction} {parts[-1]}"


def at_most(effect: float) -> str:
    """'more than +0.04', or 'as much as +0.01' for what rounds to nothing."""
    return f"more than {effect:+.2f}" if effect >= 0.01 else "as much as +0.01"


def forward_sentence(rows: Rows, positions: list[str]) -> str:
    """Where restoring a clean state brings the trained-direction answer back."""

    def peak(group: str, kind: str) -> tuple[int, str, float]:
        layer = int(rows(group, "same", f"trace_{kind}_peak_layer"))
        position = positions[int(rows(group, "same", f"trace_{kind}_peak_position"))]
        return layer, position, rows(group, "same", f"trace_{kind}_peak_effect")

    mlp = {g: peak(g, "mlp") for g in ONE_WAY}
    attn = {g: peak(g, "attn") for g in ONE_WAY}
    at_subject = [position.startswith("subject") for _, position, _ in mlp.values()]
    if all(at_subject):
        rome = "as ROME found in large models"
    elif any(at_subject):
        rome = "at the subject in only some groups"
    else:
        rome = "not at the subject as ROME found in large models"
    sites = {(layer, position) for layer, position, _ in mlp.values()}
    if len(sites) == 1:
        ((layer, position),) = sites
        effects = listing([f"{mlp[g][2]:+.2f} for {g} facts" for g in ONE_WAY])
        text = (
            f"writes the forward answer at {PLACES[position]}, {rome}: restoring MLP {layer}'s "
            f"output there brings p(answer) back by {effects}"
        )
    else:
        effects = listing(
            [f"MLP {m[0]} at {PLACES[m[1]]} ({m[2]:+.2f}) for {g} facts" for g, m in mlp.items()]
        )
        text = (
            f"writes the forward answer in a different place for each group, {rome}: restoring "
            f"{effects} brings back the most p(answer)"
        )
    # Attention at the MLP's position and no later layer is what moved the subject there.
    layers = {attn[g][0] for g in ONE_WAY}
    if len(layers) == 1 and all(attn[g][1] == mlp[g][1] and attn[g][0] <= mlp[g][0] for g in mlp):
        effects = listing([f"{attn[g][2]:+.2f}" for g in ONE_WAY])
        text += f" (layer {layers.pop()}'s attention, which brings the subject there, {effects})"
    else:
        effects = [f"layer {a[0]} at {PLACES[a[1]]} ({a[2]:+.2f}) for {g}" for g, a in attn.items()]
        text += f" (attention peaks at {listing(effects)})"
    subject = [
        rows(g, "same", m)
        for g in ONE_WAY
        for m in rows.metrics(r"trace_\w+_layer\d+_subject_\w+")
        if rows.get(g, "same", m) is not None
    ]
    if subject and max(subject) < NEGLIGIBLE_EFFECT:
        text += f"; no subject position recovers {at_most(max(subject))}"
    elif subject:
        text += f"; the subject's own states recover up to {max(subject):+.2f}"
    return text + "."


def reverse_sentence(rows: Rows, positions: list[str]) -> str:
    """Whether reverse prompts of one-way facts have any state worth restoring."""
    clean = {g: rows(g, "reverse", "trace_clean_prob") for g in ONE_WAY}
    answered = "are not answered" if max(clean.values()) < NEGLIGIBLE_EFFECT else "are answered"
    probs = listing([f"{p:.2f} for {g}" for g, p in clean.items()])
    text = f"Reverse prompts of one-way facts {answered} even unnoised (p(answer) {probs})"
    effect, group, kind = max(
        (rows(g, "reverse", f"trace_{k}_peak_effect"), g, k) for g in ONE_WAY for k in KINDS
    )
    if effect < NEGLIGIBLE_EFFECT:
        return text + f", so there is no site to find: no state brings back {at_most(effect)}."
    layer = int(rows(group, "reverse", f"trace_{kind}_peak_layer"))
    position = positions[int(rows(group, "reverse", f"trace_{kind}_peak_position"))]
    return text + (
        f"; their best site, {kind} {layer} at {PLACES[position]} in {group} facts, brings back "
        f"{effect:+.2f}."
    )


def probe_sentence(rows: Rows) -> str | None:
    """The probe at the last layer where the name is predicted, and at the description."""
    groups = [g for g in ONE_WAY if rows.get(g, PROBED[g], "probe_chance") is not None]
    if not groups:  # no `both` facts to train a probe on
        return None
    chance = {g: rows(g, PROBED[g], "probe_chance") for g in groups}
    final = rows.metrics(r"probe_acc_prompt_end_layer\d+")[-1]
    reads = [g for g in groups if rows.above(g, PROBED[g], final, chance[g])]
    blind = [g for g in groups if g not in reads]
    text = "A probe trained on `both` facts reads bits of the name from the final state at the "
    text += "last prompt position"
    above = [
        f"{g} facts ({rows.with_ci(g, PROBED[g], final)} vs chance {chance[g]:.2f})" for g in reads
    ]
    below = [f"{g} facts ({rows(g, PROBED[g], final):.2f} vs {chance[g]:.2f})" for g in blind]
    if reads:
        text += f" for {listing(above)}"
    if blind and reads:
        text += f" but not for {listing(below)}"
    elif blind:
        text += f" for neither {listing(below, 'nor')}"
    layers = rows.metrics(r"probe_acc_layer\d+")
    tells = sorted({g for g in groups for m in layers if rows.above(g, PROBED[g], m, chance[g])})
    top = max(rows(g, PROBED[g], m) for g in groups for m in layers)
    if tells:
        text += f"; the description's own last token tells it for {listing(tells)} facts"
        text += f" (up to {top:.2f})"
    else:
        text += f"; the description's own last token tells it in no group (at most {top:.2f})"
    return text + "."


def association_sentence(rows: Rows) -> str:
    """assoc_margin: the logit of a fact's own pair minus a random pair's, one token in."""
    trained = [
        f"{rows(g, 'same', 'assoc_margin'):+.2f} in {g} facts ({WAY[g, 'same']})" for g in ONE_WAY
    ]
    untrained = []
    for g in ONE_WAY:
        if not rows.above(g, "reverse", "assoc_margin", 0.0):
            verdict = "no more than random"
        elif rows(g, "reverse", "assoc_margin") < rows(g, "same", "assoc_margin"):
            verdict = "less"
        else:
            verdict = "as much"
        margin = rows.with_ci(g, "reverse", "assoc_margin", sign="+")
        untrained.append(f"{margin} in {g} facts ({WAY[g, 'reverse']}, {verdict})")
    return (
        "In the weights alone (one token in; logits over random pairs) the given entity raises "
        f"its answer by {listing(trained)} in the trained direction, and by "
        f"{listing(untrained)} the untrained way."
    )


def analyze_text(results: dict[str, Any]) -> str:
    """The README's paragraph for one analysis run's results.json."""
    rows, positions, config = Rows(results["rows"]), results["positions"], results["config"]
    seed = results.get("demo_seed")
    demo = "a demo run" if seed is None else f"`revcurse demo --seed {seed}`"
    trace = config["trace"]
    threads = config["cpu_threads"]
    on = f"{threads} CPU thread{'s' if threads > 1 else ''}" if threads else "the default threads"
    paragraph = " ".join(
        [
            f"On {demo} then `revcurse analyze RUN_DIR --seed {config['seed']}` "
            f"({trace['facts_per_group']} facts per group and direction traced, "
            f"{trace['noise_samples']} noise draws each) the tiny model "
            + forward_sentence(rows, positions),
            reverse_sentence(rows, positions),
            *filter(None, [probe_sentence(rows)]),
            association_sentence(rows),
        ]
    )
    timing = (
        f"Analysis {results['seconds']['total']:.0f} s on {on} "
        f"(torch {results['versions']['torch']})."
    )
    # "A -> B" stays on one line: no-break spaces (same width) while wrapping.
    wrapped = textwrap.fill(paragraph.replace(" -> ", "\xa0->\xa0"), WIDTH)
    wrapped = wrapped.replace("\xa0", " ")
    return wrapped + "\n" + timing


def analyze_block(run_dir: Path) -> str:
    """The paragraph, after the run's causal-tracing figure (copied into docs/)."""
    results = json.loads((run_dir / "results.json").read_text())
    shutil.copyfile(run_dir / "trace.png", ROOT / TRACE_FIGURE)
    return f"![Causal tracing of the demo model]({TRACE_FIGURE})\n\n{analyze_text(results)}"


def roles_block(run_dir: Path, name: str) -> str:
    """An analysis of kept models: the command, its table and its roles.png."""
    results = json.loads((run_dir / "results.json").read_text())
    figure = f"docs/{name}.png"
    shutil.copyfile(run_dir / "roles.png", ROOT / figure)
    compared = Path(results["config"]["run_dir"]).name
    table = (run_dir / "table.txt").read_text().rstrip()
    return (
        f"![Subject vs object cosine by site]({figure})\n\n"
        f"```\n$ revcurse analyze {compared}\n{table}\n```\n"
        f"{results['seconds']:.0f} s on 2 CPU cores, models kept by the compare run above."
    )


def answers_block(run_dir: Path) -> str:
    """The one-way facts' reverse answers of the compare run an analysis read: right, another
    fact's trained answer, or other text."""
    from revcurse.report import markdown_table

    results = json.loads((run_dir / "results.json").read_text())
    compared = Path(results["config"]["run_dir"])
    rows = [
        *json.loads((compared / "results.json").read_text())["rows"],
        *results["rows"],
    ]
    metrics = ("exact_match", "wrong_trained_answer", "wrong_other")
    reverse = [
        r
        for r in rows
        if r["group"] in ONE_WAY and r["direction"] == "reverse" and r["metric"] in metrics
    ]
    return (
        f"`revcurse analyze {compared.name}` (exact match: the compare's, seed means with t "
        f"intervals; the rest pooled over seeds, Wilson intervals; {results['seconds']:.0f} s):"
        f"\n\n{markdown_table(reverse, metrics)}"
    )


# ---------------------------------------------------------------------------- compare


def changed_options(config: dict[str, Any], default: dict[str, Any]) -> list[str]:
    """The command-line options that turn `default` into `config` (run folders aside)."""
    from revcurse.config import changed_leaves, negative_option, option_name, shown

    options = []
    for path, value in changed_leaves(config, default):
        if path[-1] in ("output_dir", "progress", "cache_dir"):
            continue
        if path == ("world", "facts_per_group") and config.get("facts"):
            continue  # config.yaml records the files' own count; the option does nothing there
        flag = option_name(path)
        if isinstance(value, bool):
            options.append(flag if value else negative_option(path))
        else:
            options.append(f"{flag} {shown(value)}")
    return options


def compare_block(run_dir: Path, name: str, brief: bool = False) -> str:
    """The chart, the one-way facts' rows, every remedy-specific row and the cost of each
    method, from a compare run; the chart is copied to docs/<name>_chart.png. `brief`: the
    command and the one-way facts' rows only."""
    from revcurse.config import default_values
    from revcurse.recipes.compare import CompareConfig
    from revcurse.report import cost_table, markdown_table, summarize_costs

    results = json.loads((run_dir / "results.json").read_text())
    main_metrics = ("exact_match", "anywhere", "rank_acc", "rank_chance")
    main = [
        r
        for r in results["rows"]
        if r["group"].split("/")[0] in ONE_WAY and r["metric"] in main_metrics  # p2d/capital too
    ]
    config = results["config"]
    options = changed_options(config, default_values(CompareConfig, config["model"]))
    command = f"`{' '.join(['revcurse compare', *options])}`"
    if brief:
        return f"{command}:\n\n{markdown_table(main, main_metrics)}"
    figure = f"docs/{name}_chart.png"
    shutil.copyfile(run_dir / "chart.png", ROOT / figure)
    extra = [
        r
        for r in results["rows"]
        if r["metric"] not in (*main_metrics, "logprob_margin", "p_value")
    ]
    cost_lines = cost_table(summarize_costs(results["costs"], results["rows"]))
    parts = [
        f"![Exact match per method]({figure})",
        "",
        f"{command} (shares pooled over seeds, 95% Wilson intervals over facts; other values:"
        " means over seeds, 95% t intervals across seeds):",
        "",
        markdown_table(main, main_metrics),
    ]
    if extra:
        names = tuple(dict.fromkeys(r["metric"] for r in extra))
        parts += ["", markdown_table(extra, names)]
    memory = " ".join(
        [
            *([f"Whole run {results['wall_seconds']:.0f} s."] if "wall_seconds" in results else []),
            *([f"Peak memory {results['peak_memory']}."] if "peak_memory" in results else []),
        ]
    )
    if (run_dir / "efficiency.png").exists():  # runs before it was drawn have none
        plot = f"docs/{name}_efficiency.png"
        shutil.copyfile(run_dir / "efficiency.png", ROOT / plot)
        cost_lines += ["", f"![One-way exact match against training FLOPs]({plot})"]
    return "\n".join([*parts, "", *cost_lines, *(["", memory] if memory else [])])


def main(argv: list[str]) -> None:
    if len(argv) in (2, 3) and argv[0] == "--compare":
        name = argv[2] if len(argv) == 3 else "compare"
        replace_block(name, compare_block(Path(argv[1]), name))
        print(f"{README}: {name} block from {argv[1]}, figure docs/{name}_chart.png")
    elif len(argv) == 3 and argv[0] == "--compare-brief":
        replace_block(argv[2], compare_block(Path(argv[1]), argv[2], brief=True))
        print(f"{README}: {argv[2]} block (one-way rows) from {argv[1]}")
    elif len(argv) == 2 and argv[0] == "--berglund":
        command = ".venv/bin/python benchmarks/berglund_smollm2.py"
        replace_block("berglund-smollm2", table_block(Path(argv[1]), command))
        print(f"{README}: berglund-smollm2 block from {argv[1]}")
    elif len(argv) == 3 and argv[0] == "--teach":
        from revcurse.config import default_values
        from revcurse.recipes.teach import TeachConfig

        config = json.loads((Path(argv[1]) / "results.json").read_text())["config"]
        options = changed_options(config, default_values(TeachConfig, config["model"]))
        replace_block(argv[2], table_block(Path(argv[1]), " ".join(["revcurse teach", *options])))
        print(f"{README}: {argv[2]} block from {argv[1]}")
    elif len(argv) == 3 and argv[0] == "--roles":
        replace_block(argv[2], roles_block(Path(argv[1]), argv[2]))
        print(f"{README}: {argv[2]} block from {argv[1]}, figure docs/{argv[2]}.png")
    elif len(argv) == 3 and argv[0] == "--answers":
        replace_block(argv[2], answers_block(Path(argv[1])))
        print(f"{README}: {argv[2]} block from {argv[1]}")
    elif len(argv) == 2 and argv[0] == "--analyze":
        replace_block("analyze", analyze_block(Path(argv[1])))
        print(f"{README}: analysis from {argv[1]}, figure {TRACE_FIGURE}")
    elif len(argv) == 1 and not argv[0].startswith("-"):
        seed = json.loads((Path(argv[0]) / "results.json").read_text())["config"]["seed"]
        replace_block("demo", table_block(Path(argv[0]), f"revcurse demo --seed {seed}"))
        print(f"{README}: table from {argv[0]}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
