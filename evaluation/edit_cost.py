"""What the editing tasks cost against plain sampling with the same checkpoint (scripts/benchmark_edit.py).

The variants (each a whole sample.py task on one input image):

    generate       n samples (the reference for inpaint and sdedit)
    inpaint        n fills of the input's mask (replacement method; RePaint's resamples = 1)
    sdedit s=...   n edits at each strength s: t0 = s T, so about s of the sampling steps
    generate n=1   one sample (the reference for diffedit, which edits one image)
    diffedit       mask passes + DDIM encoding to encode_ratio + decoding under the target
    diffedit mask  the mask passes alone (2 conditions x mask_draws noise draws, batched)

Goals (issue 4): inpaint <= 1.1x generate; diffedit <= 1.1x generate n=1 plus its mask passes; sdedit at
strength s about s x generate. DiffEdit's DDIM encoding and decoding each run encode_ratio x steps, so without
the mask it costs about 2 x encode_ratio of plain sampling: the goal holds for encode_ratio <= 0.55. The ratios
are medians of the per-round ratios (evaluation/timing.py).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from evaluation.timing import paired_ratio

INPAINT_GOAL = 1.1  # inpaint / generate
DIFFEDIT_GOAL = 1.1  # (diffedit - its mask passes) / generate n=1


def summarise(times: dict[str, list[float]], strengths: Sequence[float]) -> dict[str, Any]:
    """Median seconds and the paired ratios of each task to its reference."""
    paired = lambda a, b: paired_ratio(times[a], times[b])  # noqa: E731
    out: dict[str, Any] = {"seconds": {k: statistics.median(v) for k, v in times.items()}, "ratio": {}}
    out["ratio"]["inpaint"] = paired("inpaint", "generate")
    for s in strengths:
        out["ratio"][f"sdedit s={s:g}"] = paired(f"sdedit s={s:g}", "generate")
    if "diffedit" in times:
        out["ratio"]["diffedit"] = paired("diffedit", "generate n=1")
        out["ratio"]["diffedit mask"] = paired("diffedit mask", "generate n=1")
        # the DiffEdit goal: what is left after the mask passes, against one plain sample
        rest = [(d - m) / g for d, m, g in zip(times["diffedit"], times["diffedit mask"], times["generate n=1"])]
        out["ratio"]["diffedit without mask"] = statistics.median(rest)
    return out


def print_table(report: dict[str, Any]) -> None:
    """Median seconds and ratio of each task, then the goals."""
    s = report["summary"]
    print(f"\n{report['ckpt']}: {report['steps']} DDIM steps, n={report['n']}, {report['rounds']} rounds; "
          f"{report['device']} ({report['threads']} threads)")
    print(f"{'task':24} {'median s':>9} {'/ reference':>12}")
    for name, seconds in s["seconds"].items():
        ratio = s["ratio"].get(name)
        print(f"{name:24} {seconds:>9.2f} {'' if ratio is None else f'{ratio:.3f}x':>12}")
    ok = lambda b: "ok" if b else "MISSED"  # noqa: E731
    print(f"inpaint / generate: {s['ratio']['inpaint']:.3f}x (goal <= {INPAINT_GOAL}: "
          f"{ok(s['ratio']['inpaint'] <= INPAINT_GOAL)})")
    if "diffedit" in s["ratio"]:
        rest = s["ratio"]["diffedit without mask"]
        print(f"diffedit / generate n=1: {s['ratio']['diffedit']:.3f}x, of which the mask passes "
              f"{s['ratio']['diffedit mask']:.3f}x; the rest {rest:.3f}x (goal <= {DIFFEDIT_GOAL}: "
              f"{ok(rest <= DIFFEDIT_GOAL)})")
    print("sdedit / generate: " + ", ".join(f"s={s_:g} {s['ratio'][f'sdedit s={s_:g}']:.3f}x"
                                            for s_ in report["strengths"]))
