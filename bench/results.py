"""Reads one run of bench/run: the `BENCH_JSON {...}` lines of each step's
log in bench/out/<time>/, grouped by step (`replication.2.log` is run 2 of
step `replication`), the versions file and strace's counts. Measures
nothing; shared by bench/plot.py and bench/report.py."""

import json
import re
import statistics
from pathlib import Path

MARKER = "BENCH_JSON "


def bench_json(path):
    """The figures a log printed on its BENCH_JSON line, or None."""
    for line in Path(path).read_text(errors="replace").splitlines():
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER) :])
    return None


def load(out):
    """{step: [figures of each run, in run order]} for the run in `out`."""
    out = Path(out)
    steps = {}
    for log in sorted(out.glob("*.log"), key=lambda p: _order(p.stem)):
        figures = bench_json(log)
        if figures is None:
            continue
        name = re.sub(r"\.\d+$", "", log.stem)
        steps.setdefault(name, []).append(figures)
    return steps


def _order(stem):
    m = re.match(r"(.*)\.(\d+)$", stem)
    return (m.group(1), int(m.group(2))) if m else (stem, 0)


def versions(out):
    path = Path(out) / "versions.txt"
    pairs = {}
    if path.exists():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            pairs[key] = value
    return pairs


def failed(out):
    path = Path(out) / "failed.txt"
    return path.read_text().split() if path.exists() else []


def strace_calls(path):
    """{syscall: calls} from the summary `strace -c` wrote, or {}."""
    path = Path(path)
    calls = {}
    if not path.exists():
        return calls
    for line in path.read_text().splitlines():
        fields = line.split()
        # % time, seconds, usecs/call, calls, [errors,] syscall
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
            calls[fields[-1]] = int(fields[3])
    return calls


def values(runs, *keys):
    """The figure at `keys` in each run that has it."""
    found = []
    for run in runs or []:
        value = run
        for key in keys:
            if not isinstance(value, dict) or key not in value:
                value = None
                break
            value = value[key]
        if isinstance(value, (int, float)):
            found.append(float(value))
    return found


def median(runs, *keys):
    found = values(runs, *keys)
    return statistics.median(found) if found else None
