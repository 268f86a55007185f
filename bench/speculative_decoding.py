"""Self-speculative greedy decoding on the trained char LM: acceptance rate and speed-up.

    .venv/bin/python bench/speculative_decoding.py [--new 200] [--repeats 3] [--draft-lens 2,4]
                                                   [--prompts 3] [--out docs/benchmarks]

Drafts: the full char LM with k = 1, 2, 3 blocks skipped, the blocks chosen by fastc's layer-skip
(Block Influence on 8 training windows, fastc_eval.speculative.fastc_draft, static shapes).
Two like-for-like pairs, each against plain greedy decoding with the same full model:

  eager   full model eager; draft = skipped_copy(model, the blocks fastc's record names)
  fastc   full model compiled by fastc (target cpu, no lossy pass, static shapes behind Padded:
          (1, 128) and (draft_len + 1, 128)); draft = fastc's layer-skip graph (Padded (1, 128))

Each prompt is 32 characters of the held-out split; --new tokens are generated. The output is
checked to equal plain greedy decoding token for token. Wall-clock: every variant run once per
repeat, interleaved, median over repeats, summed over prompts. Per-call cost of each model on one
window (batch 1, 128 tokens) is measured too (median of 20 calls). The machine and its load are
written with the results. No KV cache anywhere: every call recomputes its window.

Writes <out>/speculative-decoding.md and <out>/speculative-decoding.json.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch

from fastc.costmodel.machine import cpu_name
from fastc_eval import zoo
from fastc_eval.data import stdlib_corpus
from fastc_eval.speculative import (compiled_full, fastc_draft, greedy_generate, skipped_copy,
                                    speculative_generate)

ROOT = Path(__file__).resolve().parents[1]
PROMPT_LEN = 32


def prompts(n: int) -> list[torch.Tensor]:
    """n prompts from the held-out split, each starting at a line start, spread over the text."""
    val = zoo.corpus_tokens()[1]
    newline = stdlib_corpus.encode("\n")[0]
    out = []
    for i in range(n):
        at = (i + 1) * len(val) // (n + 2)
        while val[at] != newline:
            at += 1
        out.append(val[at + 1:at + 1 + PROMPT_LEN])
    return out


def per_call_ms(fn, x, calls: int = 20) -> float:
    times = []
    with torch.no_grad():
        fn(x)
        for _ in range(calls):
            start = time.perf_counter()
            fn(x)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--new", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--draft-lens", default="2,4", help="eager pair; the fastc pair uses the last")
    ap.add_argument("--prompts", type=int, default=3)
    ap.add_argument("--skips", default="1,2,3")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks"))
    args = ap.parse_args()
    torch.manual_seed(0)
    draft_lens = [int(v) for v in args.draft_lens.split(",")]
    skips = [int(v) for v in args.skips.split(",")]
    fastc_len = draft_lens[-1]
    model = zoo.load("char-lm").eval()
    context = model.cfg.context
    ps = prompts(args.prompts)
    results = {"machine": cpu_name(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
               "load_before": os.getloadavg()[0], "new_tokens": args.new, "prompt_len": PROMPT_LEN,
               "prompts": [stdlib_corpus.decode(p) for p in ps], "repeats": args.repeats,
               "draft_lens": draft_lens, "fastc_draft_len": fastc_len, "drafts": {}}

    start = time.perf_counter()
    full_fastc = compiled_full(model, batches=(1, fastc_len + 1))
    drafts = {}
    for k in skips:
        d = fastc_draft(model, skip=k)
        drafts[k] = d
        results["drafts"][k] = {"blocks": d.skipped, "influence": [w.removeprefix("inner.") for w in d.record.rewritten]}
    # variants: name -> (full, draft or None, draft_len)
    variants = {"eager greedy": (model, None, 0)}
    for k, d in drafts.items():
        eager_draft = d.eager(model)
        for dl in draft_lens:
            variants[f"eager skip{k} L{dl}"] = (model, eager_draft, dl)
    variants["fastc greedy"] = (full_fastc, None, 0)
    for k, d in drafts.items():
        variants[f"fastc skip{k} L{fastc_len}"] = (full_fastc, d.model, fastc_len)
    window = ps[0].repeat(context // PROMPT_LEN + 1)[:context][None]
    with torch.no_grad():  # compile every shape before timing
        full_fastc(torch.zeros(fastc_len + 1, context, dtype=torch.long))
    results["compile_s"] = time.perf_counter() - start
    results["per_call_ms"] = {"eager full": per_call_ms(model, window),
                              **{f"eager skip{k}": per_call_ms(d.eager(model), window) for k, d in drafts.items()},
                              "fastc full": per_call_ms(full_fastc, window),
                              **{f"fastc skip{k}": per_call_ms(d.model, window) for k, d in drafts.items()}}

    def run(name, p):
        full, draft, dl = variants[name]
        if draft is None:
            return greedy_generate(full, p, args.new)
        return speculative_generate(full, draft, p, args.new, dl)

    reference = [greedy_generate(model, p, args.new)[0] for p in ps]
    times = {name: [[] for _ in ps] for name in variants}
    stats = {}
    for _ in range(args.repeats):
        for name in variants:
            for i, p in enumerate(ps):
                tokens, s = run(name, p)
                assert torch.equal(tokens, reference[i]), f"{name}: output differs from greedy on prompt {i}"
                times[name][i].append(s.wall_s)
                stats[(name, i)] = s
    rows = []
    for name in variants:
        wall = sum(statistics.median(t) for t in times[name])
        per_prompt = [stats[(name, i)] for i in range(len(ps))]
        drafted = sum(s.drafted for s in per_prompt)
        accepted = sum(s.accepted for s in per_prompt)
        rows.append({"variant": name, "wall_s": wall, "wall_s_per_prompt_repeat": times[name],
                     "spread": max(max(t) / min(t) for t in times[name]),
                     "acceptance": accepted / drafted if drafted else None,
                     "acceptance_per_prompt": [s.acceptance_rate if s.drafted else None for s in per_prompt],
                     "full_calls": sum(s.full_calls for s in per_prompt),
                     "full_rows": sum(s.full_rows for s in per_prompt),
                     "draft_calls": sum(s.draft_calls for s in per_prompt)})
    base = {r["variant"]: r["wall_s"] for r in rows if r["variant"].endswith("greedy")}
    for r in rows:
        r["speedup"] = base[r["variant"].split(" ")[0] + " greedy"] / r["wall_s"]
    results["rows"] = rows
    results["samples"] = [stdlib_corpus.decode(t[PROMPT_LEN:]) for t in reference]
    results["load_after"] = os.getloadavg()[0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "speculative-decoding.json").write_text(json.dumps(results, indent=1))
    write_markdown(results, out / "speculative-decoding.md")
    print((out / "speculative-decoding.md").read_text())


def write_markdown(r: dict, path: Path):
    n = len(r["prompts"])
    lines = [
        "# Self-speculative decoding on the char LM",
        "",
        "Generated by `bench/speculative_decoding.py` (see its docstring for the method; the decoder is "
        "`fastc_eval.speculative`). Trained char-lm (6 blocks, context 128), greedy decoding of "
        f"{r['new_tokens']} new tokens after each of {n} prompts of {r['prompt_len']} held-out characters. "
        "Every speculative output was checked to equal plain greedy decoding token for token. "
        f"Wall time: sum over the prompts of the median of {r['repeats']} interleaved repeats. "
        f"Machine: {r['machine']}, {r['cores']} cores, torch threads {r['threads']}; load average "
        f"{r['load_before']:.1f} before, {r['load_after']:.1f} after. The machine was shared with other "
        "jobs while this ran: the times and speed-ups are indicative only.",
        "",
        "Drafts: the full model with the k blocks that fastc's layer-skip removes (Block Influence, "
        "least influential first):",
        "",
    ]
    lines += [f"- skip {k}: {', '.join(d['blocks'])} ({'; '.join(d['influence'])})" for k, d in r["drafts"].items()]
    lines += ["", "Cost of one call on one window (batch 1 x 128 tokens), median ms:", "",
              "| model | ms |", "|---|---|"]
    lines += [f"| {name} | {ms:.2f} |" for name, ms in r["per_call_ms"].items()]
    lines += ["", "`eager`: full model and draft both eager (the draft is `skipped_copy` of the blocks above). "
              f"`fastc`: both compiled by fastc, target cpu, static shapes (windows right-padded to 128 tokens, "
              f"verify batches to {r['fastc_draft_len'] + 1} rows); the draft is fastc's layer-skip graph. "
              "Speed-up: against plain greedy decoding with the same full model (eager or fastc). "
              "L: draft length (tokens proposed per round).", "",
              "| variant | acceptance | full calls (rows) | draft calls | wall s | speed-up | max/min repeat |",
              "|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        acc = "-" if row["acceptance"] is None else f"{row['acceptance']:.3f} (" + ", ".join(
            f"{a:.2f}" for a in row["acceptance_per_prompt"]) + ")"
        lines.append(f"| {row['variant']} | {acc} | {row['full_calls']} ({row['full_rows']}) | "
                     f"{row['draft_calls']} | {row['wall_s']:.3f} | {row['speedup']:.2f}x | {row['spread']:.2f} |")
    lines += ["", "max/min repeat: the largest ratio of the slowest to the fastest repeat of one prompt (load "
              "spikes show there; the median keeps them out unless they hit most repeats).", "",
              "## Reading it", "",
              "A round with L proposals costs L draft calls and one full call, and yields the accepted "
              "proposals plus one token of the full model; plain greedy costs one full call per token. So the "
              "speed-up is about (tokens per round) / (L x draft cost + verify cost), costs in full-model calls. "
              "Here the draft's cost is roughly proportional to the blocks it keeps (skipping 1 of 6 blocks "
              "saves ~15% a call, 3 of 6 ~45%: the embedding, head and per-call overhead stay), and the blocks "
              "Block Influence ranks lowest still change the greedy token often enough that acceptance falls "
              "fast as blocks go. The two effects cancel: neither eager nor fastc gets a clear speed-up on "
              "this model, and L=4 is worse than L=2 (each extra proposal is accepted less often and costs "
              "a draft call).", "",
              "No KV cache: every call recomputes its whole window. Once prompt + text passes the 128-token "
              "context, the predictions of one round have different windows (plain greedy crops per token), "
              "so the verify call runs up to L+1 rows of 128 tokens (the `rows` count) to stay exactly equal "
              "to plain greedy; with a KV cache, verifying L+1 tokens would cost about one incremental call and "
              "the draft calls would be cheap incremental calls too, which is where self-speculative decoding "
              "pays (LayerSkip, SWIFT, Draft & Verify measure it on LLMs with caches, memory-bound decoding and "
              "much deeper stacks).", "",
              "fastc greedy is slower than eager greedy here because its static shapes make every call a "
              "full 128-token window (right-padded) while eager's early windows are shorter; the alternative, "
              "fastc_draft(dynamic=True), takes every length in one graph, but fastc builds code for each new "
              "length on its first call (about half a second each on this machine), which a 200-token "
              "generation pays ~100 times before its lengths repeat.", "",
              "Acceptance depends on the text: a prompt whose greedy continuation degenerates into a repeated "
              "character (`____`, spaces) is easy to draft (the per-prompt rates in brackets).", ""]
    lines += ["The full model's greedy continuations (they decide how predictable the text is):", ""]
    lines += [f"- `{p!r}` -> `{s[:120]!r}`" for p, s in zip(r["prompts"], r["samples"])]
    lines.append("")
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
