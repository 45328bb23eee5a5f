"""`rlhfkit report RUN_DIR`: one self-contained RUN_DIR/report.html from whatever the run folder holds.

    rlhfkit report runs/demo            # -> runs/demo/report.html

Sections: stage timings, training curves of every stage (metrics.jsonl), reward-model accuracy and
calibration (reward/eval.json), the eval table base / base few-shot / SFT / RLHF (eval.json), sample
answers side by side (samples.json), degenerate policies vs the gold judge (world/audit.json),
annotator quality (rankings/quality.json). A missing or unreadable part becomes a "not run" / "could
not read" note, never a crash. Plots are inline base64 PNGs and all text — model outputs included — is
HTML-escaped.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import html
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable

# Known stage folders in recipe order; any other folder with a metrics.jsonl follows them.
STAGES = ("pretrain", "sft", "reward", "ppo", "grpo", "rloo", "dpo", "best-of-n")
MODEL_ORDER = ("base", "base_few_shot", "sft", "policy")
MODEL_LABELS = {"base": "base", "base_few_shot": "base few-shot", "sft": "SFT", "policy": "RLHF"}
EVAL_KEYS = ("gold_mean", "win_rate", "kl", "refusal_rate_harmful", "over_refusal_benign",
             "refusal_rate_other", "instruction_following", "finish_rate", "mean_length",
             "diversity.distinct_1", "diversity.distinct_2", "diversity.identical_pairs", "n_prompts",
             "n_samples")
MAX_ROWS = 60  # rows shown of any generic table (the JSON files keep everything)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:1150px;color:#222;
padding:0 1rem;line-height:1.4}
h1{margin-bottom:.2rem} h2{border-bottom:2px solid #ddd;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem} th,td{border:1px solid #ddd;padding:.3rem .55rem;
vertical-align:top;text-align:left} th{background:#f4f6f8} td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:#777;font-style:italic} .sample{white-space:pre-wrap;max-width:340px;font-family:ui-monospace,monospace;
font-size:.82rem} img{max-width:100%} nav a{margin-right:.8rem} .muted{color:#777;font-size:.85rem}
"""


# ---------------------------------------------------------------- small HTML helpers


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if not math.isfinite(v):
            return esc(v)
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"
    return esc(v)


def cell(v: Any) -> str:
    numeric = isinstance(v, (int, float)) and not isinstance(v, bool)
    return f'<td class="num">{fmt(v)}</td>' if numeric else f"<td>{fmt(v)}</td>"


def table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows[:MAX_ROWS])
    more = f'<p class="muted">{len(rows) - MAX_ROWS} more rows not shown</p>' if len(rows) > MAX_ROWS else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def img(uri: str | None, alt: str) -> str:
    return f'<p><img src="{uri}" alt="{esc(alt)}"></p>' if uri else ""


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def render_value(v: Any, depth: int = 0) -> str:
    """Any JSON value as HTML tables: flat dicts as key/value, dicts of flat dicts and lists of flat
    dicts as matrices, anything deeper as nested headings (then escaped JSON past depth 3)."""
    if _scalar(v):
        return f"<p>{fmt(v)}</p>"
    if isinstance(v, list):
        if all(_scalar(x) for x in v):
            shown = ", ".join(fmt(x) for x in v[:MAX_ROWS])
            return f"<p>{shown}{' …' if len(v) > MAX_ROWS else ''}</p>"
        if all(isinstance(x, dict) and all(_scalar(y) for y in x.values()) for x in v):
            cols = list(dict.fromkeys(k for x in v for k in x))
            return table(cols, [[x.get(c) for c in cols] for x in v])
    if isinstance(v, dict):
        if all(_scalar(x) for x in v.values()):
            return table(["key", "value"], [[k, x] for k, x in v.items()])
        if all(isinstance(x, dict) and all(_scalar(y) for y in x.values()) for x in v.values()):
            cols = list(dict.fromkeys(k for x in v.values() for k in x))
            return table([""] + cols, [[k] + [x.get(c) for c in cols] for k, x in v.items()])
        if depth < 3:
            flat = {k: x for k, x in v.items() if _scalar(x)}
            parts = [render_value(flat, depth + 1)] if flat else []
            parts += [f"<h4>{esc(k)}</h4>{render_value(x, depth + 1)}" for k, x in v.items() if not _scalar(x)]
            return "".join(parts)
    return f"<pre>{esc(json.dumps(v, indent=1, default=str)[:5000])}</pre>"


# ---------------------------------------------------------------- reading the run folder


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def read_jsonl(path: Path) -> list[dict]:
    """metrics.jsonl rows; a torn last line (a run killed mid-write) is skipped, not fatal."""
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                rows.append(row)
    return rows


def stage_dirs(run: Path) -> list[Path]:
    known = [run / s for s in STAGES if (run / s).is_dir()]
    others = sorted(p for p in run.iterdir() if p.is_dir() and p.name not in STAGES
                    and (p / "metrics.jsonl").is_file()) if run.is_dir() else []
    return known + others


# ---------------------------------------------------------------- sections


def section_timings(run: Path) -> str:
    from .plots import bar_figure

    path = run / "timings.json"
    if not path.is_file():
        return note("not run: no timings.json")
    t = read_json(path)
    rows = [[k, v] for k, v in t.items() if isinstance(v, (int, float))]
    total = sum(v for _, v in rows)
    fig = bar_figure([r[0] for r in rows], [r[1] for r in rows], "seconds per stage", horizontal=True)
    return table(["stage", "seconds"], rows + [["total", round(total, 2)]]) + img(fig, "stage timings")


def section_curves(run: Path) -> str:
    from .plots import curves_figure

    parts = []
    for d in stage_dirs(run):
        path = d / "metrics.jsonl"
        if not path.is_file():
            parts.append(f"<h3>{esc(d.name)}</h3>" + note("no metrics.jsonl"))
            continue
        rows = read_jsonl(path)
        fig = curves_figure(rows)
        body = img(fig, f"{d.name} curves") if fig else note("metrics.jsonl has no numeric metrics")
        last = {k: v for k, v in (rows[-1] if rows else {}).items() if _scalar(v)}
        parts.append(f"<h3>{esc(d.name)}</h3>{body}<p class='muted'>{len(rows)} rows; last: "
                     + ", ".join(f"{esc(k)}={fmt(v)}" for k, v in list(last.items())[:10]) + "</p>")
        if (d / "summary.json").is_file():
            parts.append(_guard(lambda d=d: "<h4>summary</h4>" + render_value(read_json(d / "summary.json"))))
    return "".join(parts) or note("not run: no stage folders")


def calibration_points(cal: Any) -> tuple[list, list, list] | None:
    """(confidence, accuracy, count) from the shapes a calibration may take: a list of bin dicts, a
    {"bins": [...]} wrapper, or parallel lists keyed like confidence/accuracy/count."""
    conf_keys = ("confidence", "mean_pred", "predicted", "p", "prob", "mean_confidence", "pred")
    acc_keys = ("accuracy", "acc", "observed", "frac_correct", "empirical", "frac_pos", "agreement")
    n_keys = ("count", "n", "size")

    def pick(d: dict, keys) -> Any:
        return next((d[k] for k in keys if k in d), None)

    if isinstance(cal, dict) and isinstance(cal.get("bins"), list) and cal["bins"] and isinstance(cal["bins"][0], dict):
        cal = cal["bins"]
    if isinstance(cal, list) and cal and all(isinstance(b, dict) for b in cal):
        return [pick(b, conf_keys) for b in cal], [pick(b, acc_keys) for b in cal], [pick(b, n_keys) for b in cal]
    if isinstance(cal, dict):
        conf, acc = pick(cal, conf_keys), pick(cal, acc_keys)
        if isinstance(conf, list) and isinstance(acc, list) and len(conf) == len(acc):
            n = pick(cal, n_keys)
            return conf, acc, n if isinstance(n, list) else []
    return None


def section_reward(run: Path) -> str:
    from .plots import calibration_figure

    path = run / "reward" / "eval.json"
    if not path.is_file():
        return note("not run: no reward/eval.json")
    ev = read_json(path)
    if not isinstance(ev, dict):
        return render_value(ev)
    head = {k: v for k, v in ev.items() if _scalar(v)}
    parts = [table(["metric", "value"], [[k, v] for k, v in head.items()])] if head else []
    for key, v in ev.items():
        if _scalar(v):
            continue
        if "calibration" in key.lower():
            pts = calibration_points(v)
            fig = calibration_figure(*pts) if pts else None
            parts.append(f"<h3>{esc(key)}</h3>" + img(fig, "calibration") + render_value(v, 1))
        else:
            parts.append(f"<h3>{esc(key)}</h3>" + render_value(v, 1))
    return "".join(parts)


def _get(d: dict, dotted: str) -> Any:
    for part in dotted.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def section_eval(run: Path) -> str:
    from .plots import bar_figure

    path = run / "eval.json"
    if not path.is_file():
        return note("not run: no eval.json")
    ev = read_json(path)
    models = [m for m in MODEL_ORDER if isinstance(ev.get(m), dict)]
    models += [m for m, v in ev.items() if m not in models and isinstance(v, dict)]
    if not models:
        return note("eval.json holds no model results") + render_value(ev)
    labels = [MODEL_LABELS.get(m, m) for m in models]
    keys = [k for k in EVAL_KEYS if any(_get(ev[m], k) is not None for m in models)]
    parts = [table(["metric"] + labels, [[k] + [_get(ev[m], k) for m in models] for k in keys])]
    missing = [MODEL_LABELS[m] for m in MODEL_ORDER if m not in ev]
    if missing:
        parts.append(note("not run: " + ", ".join(missing)))
    parts.append(img(bar_figure(labels, [ev[m].get("gold_mean") for m in models], "gold mean"), "gold mean"))
    fams = list(dict.fromkeys(f for m in models for f in (ev[m].get("per_family") or {})))
    if fams:
        def fam_cell(m: str, f: str) -> str:
            r = (ev[m].get("per_family") or {}).get(f) or {}
            g, a = r.get("gold_mean"), r.get("accuracy")
            return "–" if g is None else f"{g:.3f}" + (f" ({a:.0%})" if isinstance(a, (int, float)) else "")
        rows = [[f] + [fam_cell(m, f) for m in models] for f in fams]
        parts.append("<h3>per family: gold mean (accuracy)</h3>" + table(["family"] + labels, rows))
        parts.append(family_detail(run, ev, models, fams))
    return "".join(parts)


def family_detail(run: Path, ev: dict, models: list[str], fams: list[str]) -> str:
    """Per model and family: accuracy, best-of-k coverage, copy rate, refusal; and the reward model's
    agreement with the gold judge on its held-out pairs, per family."""
    # On the SFT model's eval samples (eval.json), else on the reward stage's own held-out pairs.
    rm = read_json(run / "reward" / "eval.json") if (run / "reward" / "eval.json").is_file() else {}
    rm_gold = _get(ev.get("sft") or {}, "rm_gold_agreement.by_family") or (
        (_get(rm, "model.gold.by_family") or {}) if isinstance(rm, dict) else {})

    def pct(x) -> str:
        return "–" if not isinstance(x, (int, float)) else f"{x:.0%}"

    def cell(m: str, f: str) -> str:
        r = (ev[m].get("per_family") or {}).get(f) or {}
        best = next((v for k, v in r.items() if k.startswith("best_of_")), None)
        return " / ".join(pct(x) for x in (r.get("accuracy"), best, r.get("copy_rate"), r.get("refusal")))

    rows = [[f] + [cell(m, f) for m in models] + [pct((rm_gold.get(f) or {}).get("accuracy"))] for f in fams]
    head = ["family"] + [MODEL_LABELS.get(m, m) for m in models] + ["RM agrees with gold"]
    return ("<h3>per family: accuracy / best-of-k / copy rate / refusal</h3>" + table(head, rows)
            + note("best-of-k: prompts with a right answer among their k samples; copy rate: answers that restate "
                   "the asked operands, word or name; RM: held-out response pairs the gold judge orders, "
                   "ordered the same way by the reward model"))


def section_audit(run: Path) -> str:
    """RUN/world/audit.json (written by `rlhfkit run`), or the audit computed for RUN/world/world.json's
    seed and size: how copying, refusing, a fixed answer... score under the gold judge."""
    path, meta = run / "world" / "audit.json", run / "world" / "world.json"
    if path.is_file():
        result = read_json(path)
    elif meta.is_file():
        from ..world.audit import audit

        info = read_json(meta)
        result = audit(seed=info["seed"], size=info["size"])
    else:
        return note("not run: no world/world.json")
    fams = list(dict.fromkeys(f for p in result["policies"] for f in p["by_family"]))
    goals = result.get("goals", {})
    rows = [[p["name"], p["mean"]] + [p["by_family"].get(f) for f in fams]
            + [goals.get(p["name"], {}).get("target"), goals.get(p["name"], {}).get("met")]
            for p in result["policies"]]
    head = (f"<p class='muted'>seed {esc(result.get('seed'))}, size {esc(result.get('size'))}, "
            f"{esc(result.get('n_prompts'))} eval prompts; mean gold score per policy</p>")
    fixed = table(["family", "fixed answer"], list(result.get("fixed", {}).items()))
    return head + table(["policy", "mean"] + fams + ["goal", "met"], rows) + "<h3>fixed answers</h3>" + fixed


def _answer(v: Any) -> str:
    if isinstance(v, dict):  # {"response": ..., "score": ...}
        score = v.get("score")
        text = esc(v.get("response", ""))
        return text + (f'<br><span class="muted">score {fmt(score)}</span>' if score is not None else "")
    return esc("" if v is None else v)


def section_samples(run: Path) -> str:
    path = run / "samples.json"
    if not path.is_file():
        return note("not run: no samples.json")
    rows = read_json(path)
    if isinstance(rows, dict):
        rows = rows.get("samples", [])
    rows = [r for r in rows if isinstance(r, dict)]
    if not rows:
        return note("samples.json is empty")
    cols = [c for c in MODEL_ORDER if any(c in r for r in rows)]
    cols += [c for c in dict.fromkeys(k for r in rows for k in r)
             if c not in cols and c not in ("prompt", "family", "id")]
    head = "".join(f"<th>{esc(MODEL_LABELS.get(c, c))}</th>" for c in ["prompt"] + cols)
    body = ""
    for r in rows[:MAX_ROWS]:
        prompt = esc(r.get("prompt", "")) + (f'<br><span class="muted">{esc(r["family"])}</span>'
                                             if r.get("family") else "")
        body += f'<tr><td class="sample">{prompt}</td>' + "".join(
            f'<td class="sample">{_answer(r.get(c))}</td>' for c in cols) + "</tr>"
    return f"<table><tr>{head}</tr>{body}</table>"


def section_quality(run: Path) -> str:
    path = run / "rankings" / "quality.json"
    if not path.is_file():
        return note("not run: no rankings/quality.json")
    return render_value(read_json(path))


def section_experiments(run: Path) -> str:
    """One part per RUN/experiments/NAME.json (`rlhfkit experiment NAME`): its summary as a table, and for
    overoptimization the gold/proxy-vs-sqrt(KL) plot."""
    files = sorted((run / "experiments").glob("*.json")) if (run / "experiments").is_dir() else []
    if not files:
        return note("none run yet: `rlhfkit experiment sft-ablation|bad-labelers|overoptimization --run RUN`")
    parts = []
    for path in files:
        result = read_json(path)
        body = render_value(result.get("summary", {}))
        if path.stem == "overoptimization":
            body = _overoptimization_plot(result) + body
        parts.append(f"<h3>{esc(path.stem)}</h3>{body}")
    return "".join(parts)


def _overoptimization_plot(result: dict) -> str:
    from .plots import overoptimization_figure

    series = {"best-of-n": [(r.get("kl_analytic"), r.get("proxy_reward"), r.get("gold_reward"))
                            for r in result.get("best_of_n", [])]}
    for coef, v in result.get("ppo", {}).items():
        series[f"PPO β={coef}"] = [(r.get("kl"), r.get("proxy_reward"), r.get("gold_reward")) for r in v["curve"]]
    fig = overoptimization_figure(series)
    return img(fig, "gold and proxy reward against sqrt(KL)") if fig else ""


SECTIONS: list[tuple[str, str, Callable[[Path], str]]] = [
    ("timings", "Stage timings", section_timings),
    ("eval", "Evaluation: base, base few-shot, SFT, RLHF (gold judge)", section_eval),
    ("samples", "Sample answers side by side", section_samples),
    ("audit", "World audit: degenerate policies vs the gold judge", section_audit),
    ("curves", "Training curves", section_curves),
    ("reward", "Reward model: accuracy and calibration", section_reward),
    ("quality", "Annotator quality", section_quality),
    ("experiments", "Experiments", section_experiments),
]


def _guard(make: Callable[[], str]) -> str:
    """A section that fails to read its files says so; the rest of the report still gets written."""
    try:
        return make()
    except Exception as e:  # noqa: BLE001 — any malformed file must not lose the whole report
        return note(f"could not read this section: {type(e).__name__}: {e}")


def render(run_dir: str | Path) -> str:
    run = Path(run_dir)
    nav = "".join(f'<a href="#{sid}">{esc(title.split(":")[0])}</a>' for sid, title, _ in SECTIONS)
    body = "".join(f'<h2 id="{sid}">{esc(title)}</h2>{_guard(lambda f=f: f(run))}' for sid, title, f in SECTIONS)
    when = _dt.datetime.now().strftime("%Y-%m-%d %H:%M")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>rlhfkit report: {esc(run.name)}</title>"
            f"<style>{CSS}</style></head><body><h1>rlhfkit report: {esc(run.name)}</h1>"
            f"<p class='muted'>{esc(run.resolve())} · written {when}</p><nav>{nav}</nav>{body}</body></html>")


def write_report(run_dir: str | Path) -> Path:
    """Write RUN_DIR/report.html and return its path."""
    run = Path(run_dir)
    if not run.is_dir():
        raise FileNotFoundError(f"{run}: no such run folder")
    out = run / "report.html"
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(render(run), encoding="utf-8")
    tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="rlhfkit report", description="Write RUN_DIR/report.html: a "
                                "self-contained page (inline plots) of a run's curves, reward model, eval "
                                "table, samples and annotator quality.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by `rlhfkit run` (runs/NAME)")
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        out = write_report(args.run_dir)
    except (FileNotFoundError, OSError) as e:
        print(f"rlhfkit report: error: {e}", file=sys.stderr)
        return 2
    print(f"report: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
