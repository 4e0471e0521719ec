"""Which facts a weight-changing remedy treats, and how its effect is measured.

The remedies that bake a fact's reverse into existing weights (self_distill, hebbian, rome)
treat half of the one-way facts and leave the other half as controls, which no treatment
touches: none trains on, replays, keeps the keys of or is shown them (`controls`). The
treated facts' reverse recall is the effect, the controls' the placebo (it must stay at
chance), and the controls' answers measure locality. The `both` facts are the ones a
treatment may replay or protect (`replayable`): their answers are reported apart.

Metrics use EasyEdit's names (Yao et al. 2023; Meng et al. 2022):
- reliability:       reverse questions in the phrasings the remedy used (its edit prompts);
- generalization:    reverse questions in held-out phrasings (the test split);
- kept:              the treated facts' questions in their trained direction (held-out
                     phrasings) still answered: what the treatment cost them;
- locality:          share of the controls' answers (every test question about them) that
                     the treatment left unchanged;
- locality_known:    of those answers the model had right, the share still right (a wrong
                     guess that turns into another wrong guess costs locality, not this);
- locality_replayed: locality of the facts the treatment may replay or protect (`both`);
- locality_world:    of the real-world facts the start model knew (revcurse.probes), the
                     share still known;
- ppl_drift:         perplexity of held-out text (revcurse.probes) after / before, minus 1;
- sham_exact_match:  the same treatment shown each treated fact with another treated fact's
                     answer side: the true reverse, closed book, must stay at chance;
- sham_generalization: the shown (false) pairs' reverse, held out: it installs what it reads.
"""

from __future__ import annotations

import copy
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from revcurse.context import reading_documents
from revcurse.errors import UserError
from revcurse.evaluate import EvalConfig, answers, starts_with
from revcurse.facts import Example, Fact, phrasings, relation_cells
from revcurse.lm.causal import CausalLM, LanguageModel
from revcurse.probes import held_out_text, world_facts
from revcurse.remedies.setting import Setting, Treatment, plus
from revcurse.stats import proportion_row, row
from revcurse.train import TrainResult

if TYPE_CHECKING:
    from transformers import PreTrainedModel

OTHER_DIRECTION = {"p2d": "b2a", "d2p": "a2b"}  # the reverse of each one-way group


def split_one_way(setting: Setting) -> tuple[list[int], list[int]]:
    """(treated, control) fact ids: alternate one-way facts of each group (all of them, and
    no control, when `setting.teach_all`). No treatment may touch a control (`controls`)."""
    treated, control = [], []
    for group in OTHER_DIRECTION:
        ids = [i for i, f in enumerate(setting.facts) if f.group == group]
        treated += ids if setting.teach_all else ids[::2]
        control += [] if setting.teach_all else ids[1::2]
    return treated, control


def untouched(setting: Setting, treated: Sequence[int]) -> list[int]:
    """The fact ids a treatment of `treated` must leave as they were, in order."""
    return sorted(set(range(len(setting.facts))) - set(treated))


def controls(setting: Setting) -> set[int]:
    """The controls: facts no treatment trains on, replays, keeps keys for or is shown."""
    return set(split_one_way(setting)[1])


def replayable(setting: Setting) -> list[int]:
    """The untouched facts a treatment may replay or protect (its `keep`): not the controls."""
    left = controls(setting)
    return [i for i in untouched(setting, split_one_way(setting)[0]) if i not in left]


def reverse_phrasings(setting: Setting, fact_ids: Sequence[int], split: str) -> list[Example]:
    """The reverse-direction questions of these one-way facts in the given template split."""
    return [
        template.fill(setting.facts[i], i, t)
        for i in fact_ids
        for t, template in phrasings(setting.templates, setting.facts[i])
        if template.split == split and template.direction == OTHER_DIRECTION[setting.facts[i].group]
    ]


def reverse_to_write(setting: Setting, fact_ids: Sequence[int]) -> list[Example]:
    """The reverse questions a remedy writes these facts' reverse in: the training phrasings'
    (a world of statements has none, and says so)."""
    asked = reverse_phrasings(setting, fact_ids, "train")
    if fact_ids and not asked:
        raise UserError(
            "this remedy writes the reverse in the world's training phrasings, and a world of "
            "statements has none (its facts train on their own text): self_distill "
            "--remedies.self-distill.source statements has the model write it"
        )
    return asked


def questions_about(setting: Setting, fact_ids: Sequence[int]) -> list[Example]:
    """Every test question (both directions) about these facts."""
    wanted = set(fact_ids)
    return [e for e in setting.test_examples if e.fact in wanted]


def first_sentence(text: str) -> str:
    """The answer part of a continuation: up to its first full stop or line break."""
    match = re.match(r"[^.\n]*\.?", text)
    return match.group(0).rstrip() if match else ""


def training_questions(setting: Setting, fact_ids: list[int]) -> list[Example]:
    """Every training phrasing, in both directions, about these facts."""
    return [
        template.fill(setting.facts[i], i, t)
        for i in fact_ids
        for t, template in phrasings(setting.templates, setting.facts[i])
        if template.split == "train"
    ]


def own_answers(setting: Setting, fact_ids: list[int]) -> list[Example]:
    """The baseline's greedy closed-book answers to these facts' training questions."""
    asked = training_questions(setting, fact_ids)
    if not asked:  # nothing to keep: no baseline needed
        return []
    said = answers(
        setting.causal_lm(setting.baseline()[0], progress=False), setting.ask(asked), EvalConfig()
    )
    return [
        replace(e, completion=" " + first_sentence(out).strip())
        for e, out in zip(asked, said, strict=True)
        if first_sentence(out).strip()
    ]


def hits(
    lm: LanguageModel, examples: Sequence[Example], config: EvalConfig | None = None
) -> list[bool]:
    """Whether each greedy answer starts with its completion (Berglund's rule)."""
    outputs = answers(lm, examples, config or EvalConfig())
    return [starts_with(o, e.completion) for o, e in zip(outputs, examples, strict=True)]


def cell_rows(
    method: str, metric: str, examples: Sequence[Example], flags: Sequence[bool]
) -> list[dict]:
    """One proportion row of `flags` per group and direction of `examples`, in the order
    they first appear: a remedy's own measurement of each question."""
    cells: dict[tuple[str, str], list[tuple[int, bool]]] = {}
    for e, flag in zip(examples, flags, strict=True):
        cells.setdefault((e.group, e.sense), []).append((e.fact, flag))
    return [
        proportion_row(method, group, sense, metric, [f for _, f in v], [i for i, _ in v])
        for (group, sense), v in cells.items()
    ]


def by_group(
    method: str,
    metric: str,
    examples: Sequence[Example],
    flags: Sequence[bool],
    direction: str = "reverse",
) -> list[dict]:
    """One proportion row per one-way group; in a world of several relations, then one per
    group and relation too (`p2d/capital`), as revcurse.evaluate.summarize writes them."""
    kinds = list(dict.fromkeys(e.relation for e in examples))
    rows = []
    for label, group, kind in relation_cells(list(OTHER_DIRECTION), kinds):
        chosen = [
            (e.fact, f)
            for e, f in zip(examples, flags, strict=True)
            if e.group == group and kind in (None, e.relation)
        ]
        if chosen:
            facts, hit = zip(*chosen, strict=True)
            rows.append(proportion_row(method, label, direction, metric, hit, facts))
    return rows


def generic_texts(setting: Setting) -> list[str]:
    """Text about nothing the remedies touch, for the edits' key statistics (which keep its
    outputs): the first reading documents, whole."""
    return [e.prompt + e.completion for e in setting.reading[: setting.remedies.generic_documents]]


def held_out_texts(setting: Setting) -> list[str]:
    """Text no treatment trains on or protects, for ppl_drift: a pretrained model's the
    project's held-out prose (revcurse.probes); the tiny model's (which reads only its
    world's words) reading documents drawn apart from every corpus, about fresh entities."""
    if setting.pretrained:
        return held_out_text()
    documents = reading_documents(
        setting.remedies.generic_documents,
        setting.remedies.distractors,
        setting.templates,
        setting.facts,
        f"{setting.seed} held out",  # a seed of its own: none of the reading documents
        setting.fact_lines,
        setting.recombine,
    )
    return [e.prompt + e.completion for e in documents]


def mean_nll(lm: LanguageModel, texts: Sequence[str]) -> float:
    """Mean negative log-likelihood per token of whole documents."""
    pairs = [("", text) for text in texts]
    logps = lm.logprobs(pairs)
    n_tokens = sum(len(lm.tokenizer(c, add_special_tokens=False).input_ids) for _, c in pairs)
    return -sum(logps) / n_tokens


def is_baseline(setting: Setting, lm: CausalLM) -> bool:
    """Whether `lm` is the baseline model (asked without training one)."""
    trained = setting.trained_baseline
    return trained is not None and lm.model is trained[0]


def answers_before(setting: Setting, before: CausalLM, examples: Sequence[Example]) -> list[str]:
    """`before`'s greedy answers; the baseline model's to the same questions are asked once
    per setting (every edit compares against them)."""
    if not is_baseline(setting, before):
        return answers(before, examples, EvalConfig())
    asked = tuple(e.prompt for e in examples)  # the whole list: it sets the answers' length
    if asked not in setting.base_said:
        setting.base_said[asked] = answers(before, examples, EvalConfig())
    return setting.base_said[asked]


def nll_before(setting: Setting, before: CausalLM) -> float:
    """mean_nll of `before` on held-out text; the baseline model's once per setting."""
    if not is_baseline(setting, before):
        return mean_nll(before, held_out_texts(setting))
    if not setting.base_nll:
        setting.base_nll.append(mean_nll(before, held_out_texts(setting)))
    return setting.base_nll[0]


def world_known(setting: Setting) -> list[Example]:
    """The real-world facts (revcurse.probes) the start model answers right, asked once per
    setting as every model is asked (`ask`)."""
    if setting.world_known is None:
        probes = setting.ask(world_facts())
        said = hits(setting.causal_lm(setting.start, progress=False), probes)
        setting.world_known = [e for e, right in zip(probes, said, strict=True) if right]
    return setting.world_known


def world_rows(method: str, setting: Setting, lm: LanguageModel) -> list[dict]:
    """locality_world: of the real-world facts the start model knew, the share `lm` still
    knows (none written where it knew none: the tiny model)."""
    known = world_known(setting)
    if not known:
        return []
    return [
        proportion_row(
            method, "world", "all", "locality_world", hits(lm, known), [e.fact for e in known]
        )
    ]


def locality_rows(
    method: str, metric: str, examples: Sequence[Example], said: list[str], says: list[str]
) -> list[dict]:
    """`metric` (the share of answers left unchanged) over `examples`, and for the controls
    `locality_known` (of the answers that were right, the share still right)."""
    if not examples:
        return []
    facts = [e.fact for e in examples]
    unchanged = [a == b for a, b in zip(said, says, strict=True)]
    rows = [proportion_row(method, "untouched", "all", metric, unchanged, facts)]
    right = [
        (e.fact, starts_with(b, e.completion))
        for a, b, e in zip(said, says, examples, strict=True)
        if starts_with(a, e.completion)
    ]
    if metric == "locality" and right:
        known, still = zip(*right, strict=True)
        rows.append(proportion_row(method, "untouched", "all", "locality_known", still, known))
    return rows


def effect_rows(
    method: str,
    setting: Setting,
    before: CausalLM,
    after: CausalLM,
    treated: Sequence[int],
    control: Sequence[int],
) -> list[dict]:
    """Reliability, generalization (treated facts), what the treated facts kept of their
    trained direction, control reverse recall, locality (the controls, nothing protected;
    the replayable facts apart), what it kept of the world it knew, and perplexity drift on
    held-out text, of a treatment that turned `before` into `after`."""
    edit_prompts = setting.ask(reverse_phrasings(setting, treated, "train"))
    forward = [e for e in setting.ask(questions_about(setting, treated)) if e.sense == "same"]
    held_out = setting.ask(reverse_phrasings(setting, treated, "test"))
    controls = setting.ask(reverse_phrasings(setting, control, "test"))
    locality = []
    for metric, ids in (("locality", control), ("locality_replayed", replayable(setting))):
        others = setting.ask(questions_about(setting, ids))
        said = answers_before(setting, before, others)
        locality += locality_rows(
            method, metric, others, said, answers(after, others, EvalConfig())
        )
    texts = held_out_texts(setting)
    drift = math.exp(mean_nll(after, texts) - nll_before(setting, before)) - 1
    return [
        *by_group(method, "reliability", edit_prompts, hits(after, edit_prompts)),
        *by_group(method, "generalization", held_out, hits(after, held_out)),
        *by_group(method, "kept", forward, hits(after, forward), direction="same"),
        *by_group(method, "control_exact_match", controls, hits(after, controls)),
        *locality,
        *world_rows(method, setting, after),
        row(method, "held_out", "all", "ppl_drift", drift, len(texts), None),
    ]


def sham_facts(setting: Setting) -> tuple[list[Fact], list[int]]:
    """The world as a sham teacher reads it, and the treated facts it changed: each treated
    fact's answer side (`b`) swapped for the next treated fact's of its group and relation
    (a rotation: none keeps its own; a fact alone in its cell is left out)."""
    facts = list(setting.facts)
    cells: dict[tuple[str, str], list[int]] = {}
    for i in split_one_way(setting)[0]:
        cells.setdefault((facts[i].group, facts[i].relation), []).append(i)
    swapped = []
    for ids in cells.values():
        if len(ids) < 2:
            continue
        for i, j in zip(ids, ids[1:] + ids[:1], strict=True):
            facts[i] = replace(setting.facts[i], b=setting.facts[j].b)
        swapped += ids
    return facts, sorted(swapped)


def sham_rows(
    method: str, setting: Setting, shown: Setting, swapped: Sequence[int], lm: LanguageModel
) -> list[dict]:
    """What a treatment that read false pairs (`shown`, sham_facts) answers closed book: the
    true reverse (sham_exact_match, must stay at chance) and the shown pairs' reverse in
    held-out phrasings (sham_generalization: it installs what it reads)."""
    true = setting.ask(reverse_phrasings(setting, swapped, "test"))
    false = shown.ask(reverse_phrasings(shown, swapped, "test"))
    return [
        *by_group(method, "sham_exact_match", true, hits(lm, true)),
        *by_group(method, "sham_generalization", false, hits(lm, false)),
    ]


def treated_result(
    method: str,
    setting: Setting,
    changed: PreTrainedModel,
    cost: TrainResult,
    rows: Sequence[dict] = (),
    before: PreTrainedModel | None = None,
) -> Treatment:
    """The treatment of a remedy that changed a copy of `before` (the baseline model unless
    given): answers the treated facts' questions; its rows plus the effect rows."""
    treated, control = split_one_way(setting)
    was = setting.causal_lm(before if before is not None else setting.baseline()[0])
    after = setting.causal_lm(changed)
    # a sham's answers are measured by revcurse.remedies.sham_rows alone
    effects = [] if setting.sham else effect_rows(method, setting, was, after, treated, control)
    return Treatment(after, cost, questions_about(setting, treated), [*rows, *effects])


def edited(
    method: str, setting: Setting, edit: Callable[[PreTrainedModel, list[int]], None]
) -> Treatment:
    """Apply a weight edit to a copy of the baseline model for the treated facts."""
    base_model, base_cost = setting.baseline()
    start = time.perf_counter()
    model = copy.deepcopy(base_model)
    edit(model, split_one_way(setting)[0])
    seconds = time.perf_counter() - start
    return treated_result(method, setting, model, plus(base_cost, seconds=seconds))
