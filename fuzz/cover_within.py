#!/usr/bin/env python3
"""Keep the inputs of a corpus that cover the most edges within a byte budget.

For a target whose inputs are large (whole checkpoints), even the set cover
of the edges is megabytes. This reads a libFuzzer merge control file (written
by `-merge=1 -use_counters=0 -merge_control_file=FILE`, one FT line of edges
per input) and picks inputs greedily by new edges per byte until the budget
is spent, then copies them to OUT. It prints how many edges that keeps.
See docs/fuzzing.md ("Keep the corpora small").

    python3 cover_within.py CONTROL_FILE BUDGET_BYTES OUT
"""

import os
import shutil
import sys


def main(control, budget, out):
    lines = open(control).read().split("\n")
    count = int(lines[0])
    files = lines[2 : 2 + count]
    edges = {}
    for line in lines[2 + count :]:
        parts = line.split()
        if parts and parts[0] == "FT":
            edges[int(parts[1])] = set(map(int, parts[2:]))
    size = {i: os.path.getsize(files[i]) for i in edges}
    every = set().union(*edges.values())
    chosen, covered, used = [], set(), 0
    while True:
        # Tiny inputs count as 1 KiB, so that they do not win on size alone.
        fits = [i for i in edges if i not in chosen and used + size[i] <= budget]
        gain = {i: len(edges[i] - covered) for i in fits}
        best = max(fits, key=lambda i: gain[i] / max(size[i], 1024), default=None)
        if best is None or gain[best] == 0:
            break
        chosen.append(best)
        covered |= edges[best]
        used += size[best]
    os.makedirs(out, exist_ok=True)
    for i in chosen:
        shutil.copy(files[i], out)
    print(
        f"{len(chosen)} of {len(edges)} inputs, {used} bytes: "
        f"{len(covered)} of {len(every)} edges ({100 * len(covered) / len(every):.1f} %)"
    )


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
