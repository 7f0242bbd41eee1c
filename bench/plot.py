"""Draws the plots of one run of bench/run, from the BENCH_JSON lines of
its logs, into PNG files (usage: plot.py OUT_DIR PNG_DIR):

- throughput.png: durable writes per second against clients in flight,
  our edge API vs PouchDB (medians), raw SQLite serial commits for scale;
- propagation_cdf.png: distribution (CDF) of every propagation sample of
  every run, hub to store vs pouchdb-server to live-replicating PouchDB;
- replay_ingest.png: replay and ingest throughput, ours vs peers (medians);
- fleet_memory.png: the hub's resident memory against connected stores.

Measures nothing; a plot whose figures the run lacks is skipped."""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, NullFormatter  # noqa: E402

from results import load, median  # noqa: E402

DPI = 120
CLIENTS = [1, 64]


def save(fig, ax, xlabel, title, path):
    """Labels the x axis, titles the plot and writes it as PNG."""
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def throughput(steps, to):
    ours = steps.get("commit_throughput")
    peer = steps.get("pouchdb_writes")
    if not ours or not peer:
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, runs, keys, style in [
        ("edge API (HTTP, group commit)", ours, ["api_1", "api_64"], "o-"),
        ("PouchDB put (LevelDB, sync)", peer, ["pouch_1", "pouch_64"], "s-"),
    ]:
        ys = [median(runs, k, "per_second") for k in keys]
        ax.plot(CLIENTS, ys, style, label=label)
        for x, y in zip(CLIENTS, ys):
            ax.annotate(f"{y:.0f}", (x, y), textcoords="offset points", xytext=(6, 4), fontsize=8)
    raw = median(ours, "raw_sqlite", "per_second")
    if raw:
        ax.axhline(raw, color="grey", linestyle=":", label="raw SQLite FULL commit, serial")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(CLIENTS, [str(c) for c in CLIENTS])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda y, _: f"{y:,.0f}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("durable writes per second (median)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, ax, "clients (writes in flight)", "Durable local writes", to / "throughput.png")


def propagation(steps, to):
    series = [
        ("hub to store (ours)", steps.get("replication")),
        ("pouchdb-server to PouchDB, live", steps.get("pouchdb_propagation")),
    ]
    if not all(runs for _, runs in series):
        return
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, runs in series:
        samples = sorted(s for run in runs for s in run.get("delivery_samples_ms", []))
        if not samples:
            continue
        n = len(samples)
        ax.plot(samples, [(i + 1) / n for i in range(n)], label=f"{label}, {n} samples")
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylabel("fraction of samples")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save(
        fig,
        ax,
        "write at the server to applied at the store (ms)",
        "Propagation latency (CDF, all runs)",
        to / "propagation_cdf.png",
    )


def replay_ingest(steps, to):
    bars = [
        ("replay: hub", median(steps.get("replication"), "replay_events_per_second")),
        ("replay: pouchdb-server", median(steps.get("pouchdb_replay"), "replay_docs_per_second")),
        ("ingest x8: hub", median(steps.get("ingest"), "events_per_second")),
        ("ingest x8: JetStream default", median(steps.get("nats_ingest"), "messages_per_second")),
        ("ingest x8: JetStream always", median(steps.get("nats_ingest_always"), "messages_per_second")),
    ]
    bars = [(label, v) for label, v in bars if v]
    if not bars:
        return
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    colors = ["tab:blue" if "hub" in label else "tab:orange" for label, _ in bars]
    ax.barh([b[0] for b in bars], [b[1] for b in bars], color=colors)
    for i, (_, v) in enumerate(bars):
        ax.annotate(f"{v:.0f}/s", (v, i), textcoords="offset points", xytext=(4, -3), fontsize=8)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.set_xlim(right=max(v for _, v in bars) * 1.2)
    ax.invert_yaxis()
    ax.grid(True, axis="x", alpha=0.3)
    save(
        fig,
        ax,
        "events (documents, messages) per second, median",
        "Replay and ingest throughput",
        to / "replay_ingest.png",
    )


def fleet(steps, to):
    runs = steps.get("fleet")
    if not runs:
        return
    windows = runs[-1].get("windows", [])
    if not windows:
        return
    stores = [w["stores"] for w in windows]
    rss = [w["hub_rss_bytes"] / 1e6 for w in windows]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(stores, rss, "o-", label="hub resident memory")
    for x, y in zip(stores, rss):
        ax.annotate(f"{y:.0f} MB", (x, y), textcoords="offset points", xytext=(6, -10), fontsize=8)
    ax.set_ylabel("hub RSS (MB)")
    ax.grid(True, alpha=0.3)
    ax.set_ylim(bottom=0)
    save(
        fig,
        ax,
        "connected stores (each holding a long poll)",
        "Hub memory against stores",
        to / "fleet_memory.png",
    )


PLOTS = ["throughput.png", "propagation_cdf.png", "replay_ingest.png", "fleet_memory.png"]


def main():
    out, to = Path(sys.argv[1]), Path(sys.argv[2])
    to.mkdir(parents=True, exist_ok=True)
    # A plot of an earlier run that this run cannot redraw would be stale.
    for name in PLOTS:
        (to / name).unlink(missing_ok=True)
    steps = load(out)
    for draw in (throughput, propagation, replay_ingest, fleet):
        draw(steps, to)
    print(f"plots: {[name for name in PLOTS if (to / name).exists()]}")


if __name__ == "__main__":
    main()
