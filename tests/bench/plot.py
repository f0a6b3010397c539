"""The picture beside var/bench/pipeline.json: latency percentiles of the latency phase and,
after a soak, its p99 per window and every process's RSS over time, so drift shows at a glance.

matplotlib's object API with the Agg canvas: no pyplot state, no display needed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

LABELS = (("p50", "p50"), ("p90", "p90"), ("p99", "p99"), ("p999", "p99.9"), ("max", "max"))


def percentiles(ax: Axes, row: dict[str, Any]) -> None:
    ticks = [label for _, label in LABELS]
    for kind, style, dy in (("ack", "o-", -12), ("fill", "s--", 6)):  # labels apart
        values = [row[f"{kind}_{key}_us"] for key, _ in LABELS]
        ax.plot(ticks, values, style, label=f"order -> {kind}")
        for x, y in zip(ticks, values, strict=True):
            ax.annotate(f"{y:,}", (x, y), textcoords="offset points", xytext=(4, dy), fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("latency (us, log)")
    ax.set_title(
        f"latency phase: {row['offered_rate']:,} orders/s offered, open loop "
        f"({row['acks']:,} acks, HDR)"
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()


def soak_p99(ax: Axes, soak: dict[str, Any]) -> None:
    windows = soak["windows"]
    t = [w["t_s"] for w in windows]
    ax.plot(t, [w["ack_p99_us"] / 1000 for w in windows], "o-", ms=3, label="ack p99")
    ax.plot(t, [w["fill_p99_us"] / 1000 for w in windows], "s--", ms=3, label="fill p99")
    ax.axvspan(0, soak["warmup_s"], color="grey", alpha=0.15, label="warm-up")
    ax.set_ylabel("p99 per window (ms)")
    ax.set_title(
        f"soak: {soak['offered_rate']:,}/s offered, {soak['achieved_rate']:,}/s achieved, "
        f"at most {soak['window']:,} un-acked; latency from the actual send"
    )
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)


def soak_rss(ax: Axes, soak: dict[str, Any]) -> None:
    series = soak["rss_mib"]
    base = {r["process"]: r for r in soak["rss"] if not r.get("gone")}
    for name, row in base.items():
        pct = [100 * (mib / row["baseline_mib"] - 1) for mib in series[name]]
        ax.plot(series["t_s"], pct, label=f"{name} ({row['end_mib']:.0f} MiB)")
    ax.axhline(soak["rss_target_pct"], color="red", ls=":", label="target")
    ax.axvspan(0, soak["warmup_s"], color="grey", alpha=0.15)
    ax.set_xlabel("time into the soak (s)")
    ax.set_ylabel("RSS vs baseline (%)")
    ax.set_title("RSS per process, relative to its baseline (3 samples after the warm-up)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, ncol=3)


def write_plot(path: Path, latency: dict[str, Any], soak: dict[str, Any] | None) -> None:
    """A PNG: ``latency`` is the latency phase's row; ``soak`` the JSON's soak object."""
    fig = Figure(figsize=(10, 12 if soak else 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(3 if soak else 1, 1, squeeze=False)[:, 0]
    if soak:
        axes[2].sharex(axes[1])  # both over time into the soak
    percentiles(axes[0], latency)
    if soak:
        soak_p99(axes[1], soak)
        soak_rss(axes[2], soak)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
