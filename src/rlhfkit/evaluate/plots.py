"""Figures for the report, drawn with matplotlib's Agg backend and returned as base64 PNG data URIs so
report.html needs no external files. Every function returns None when there is nothing to draw."""

from __future__ import annotations

import base64
import io
import math

import matplotlib

matplotlib.use("Agg")  # no display: the report is written by headless runs and CI
import matplotlib.pyplot as plt  # noqa: E402

MAX_PANELS = 12
# Metrics drawn on one panel: proxy vs gold reward side by side is the overoptimisation picture.
SHARED_PANELS = {"proxy_reward": "reward: proxy vs gold", "gold_reward": "reward: proxy vs gold"}
PRIORITY = ("loss", "accuracy", "reward: proxy vs gold", "kl", "response_length", "entropy", "clipfrac",
            "value_loss")
SKIP = {"step", "time", "epoch"}


def to_data_uri(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _number(v) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v) if math.isfinite(v) else None


def panel_of(key: str) -> str:
    """The panel a metric goes on: `val_loss` beside `loss`, proxy beside gold reward."""
    if key in SHARED_PANELS:
        return SHARED_PANELS[key]
    return key[4:] if key.startswith("val_") else key


def curve_panels(rows: list[dict]) -> dict[str, dict[str, tuple[list[float], list[float]]]]:
    """{panel: {metric: (steps, values)}} for every numeric metric in metrics.jsonl rows."""
    panels: dict[str, dict[str, tuple[list, list]]] = {}
    for i, row in enumerate(rows):
        x = _number(row.get("step"))
        x = float(i) if x is None else x
        for key, v in row.items():
            y = _number(v)
            if key in SKIP or y is None:
                continue
            xs, ys = panels.setdefault(panel_of(key), {}).setdefault(key, ([], []))
            xs.append(x)
            ys.append(y)
    rank = {p: i for i, p in enumerate(PRIORITY)}
    ordered = sorted(panels, key=lambda p: (rank.get(p, len(rank)), p))
    return {p: panels[p] for p in ordered[:MAX_PANELS]}


def curves_figure(rows: list[dict]) -> str | None:
    """One small panel per metric (train and val together), x = step."""
    panels = curve_panels(rows)
    if not panels:
        return None
    cols = min(3, len(panels))
    nrows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 2.8 * nrows), squeeze=False)
    for ax, (name, series) in zip(axes.flat, panels.items()):
        for key, (xs, ys) in series.items():
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, ms=3, lw=1.3, label=key)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.tight_layout()
    return to_data_uri(fig)


def calibration_figure(conf: list[float], acc: list[float], counts: list[float] | None = None) -> str | None:
    """Reliability diagram: predicted P(chosen beats rejected) vs observed agreement per bin."""
    counts = counts if counts and len(counts) == len(conf) else [None] * len(conf)
    pts = [(c, a, n) for c, a, n in zip(conf, acc, counts) if _number(c) is not None and _number(a) is not None]
    if not pts:
        return None
    fig, ax = plt.subplots(figsize=(3.8, 3.4))
    ax.plot([0, 1], [0, 1], ls="--", c="grey", lw=1, label="perfect")
    # marker area grows with the bin's count, so near-empty bins do not look as trustworthy as full ones
    sizes = [25.0 if _number(n) is None else max(10.0, min(200.0, float(n))) for _, _, n in pts]
    ax.scatter([p[0] for p in pts], [p[1] for p in pts], s=sizes, zorder=3)
    ax.plot([p[0] for p in pts], [p[1] for p in pts], lw=1)
    ax.set_xlabel("predicted probability", fontsize=8)
    ax.set_ylabel("observed accuracy", fontsize=8)
    ax.set_xlim(0, 1), ax.set_ylim(0, 1)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title("reward model calibration", fontsize=9)
    fig.tight_layout()
    return to_data_uri(fig)


def bar_figure(labels: list[str], values: list[float | None], title: str, horizontal: bool = False) -> str | None:
    pairs = [(lab, v) for lab, v in zip(labels, values) if _number(v) is not None]
    if not pairs:
        return None
    fig, ax = plt.subplots(figsize=(max(3.5, 1.1 * len(pairs)), 2.8) if not horizontal
                           else (5, 0.45 * len(pairs) + 1))
    names, vals = [p[0] for p in pairs], [p[1] for p in pairs]
    (ax.barh if horizontal else ax.bar)(names, vals, color="#4878a8")
    ax.set_title(title, fontsize=9)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3, axis="x" if horizontal else "y")
    fig.tight_layout()
    return to_data_uri(fig)


def overoptimization_figure(series: dict[str, list[tuple[float, float | None, float | None]]]) -> str | None:
    """Gold (solid) and proxy (dashed) reward against sqrt(KL), one colour per series of (kl, proxy, gold)
    points: Gao et al.'s picture of a proxy that keeps rising while the gold reward turns down."""
    fig, ax = plt.subplots(figsize=(6, 3.4))
    drawn = False
    for i, (name, points) in enumerate(series.items()):
        pts = sorted((max(k, 0.0) ** 0.5, p, g) for k, p, g in points if _number(k) is not None)
        colour = f"C{i}"
        for j, style, label in ((1, "--", "proxy"), (2, "-", "gold")):
            xy = [(p[0], p[j]) for p in pts if _number(p[j]) is not None]
            if xy:
                ax.plot(*zip(*xy), style, color=colour, marker=".", label=f"{name} {label}")
                drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set_xlabel("sqrt(KL to SFT) (nats^0.5)", fontsize=8)
    ax.set_ylabel("reward", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return to_data_uri(fig)
