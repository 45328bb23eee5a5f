"""`rlhfkit label ...`: create a labeling database, load candidates, serve the ranking app, add
annotators, export rankings and check annotator quality.

    rlhfkit label init --db labels.db                 # prints the admin token
    rlhfkit label add --db labels.db --from samples.jsonl
    rlhfkit label serve --db labels.db --port 8000 --redundancy 3 --rate-limit 20
    rlhfkit label annotator --db labels.db --name alice
    rlhfkit label export --db labels.db --out rankings.jsonl
    rlhfkit label backup labels.db backups/labels-1.db   # safe while the app is serving
    rlhfkit label quality --data rankings.jsonl --out report.json
    rlhfkit label simulate --db sim.db --spec careful:0.6,noisy:0.2,adversarial:0.2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from rlhfkit.feedback.limits import DEFAULT_RATE
from rlhfkit.feedback.store import Store, StoreError

PROG = "rlhfkit label"


def _ensure_admin(store: Store) -> None:
    """Create the first admin (and print its token) if the database has none."""
    if not store.has_admin():
        _, token = store.create_annotator("admin", is_admin=True)
        print(f"admin token (shown once, keep it): {token}")


def cmd_init(args: argparse.Namespace) -> int:
    store = Store.open(args.db)
    print(f"{args.db}: labeling database ready")
    _ensure_admin(store)
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from rlhfkit.feedback.candidates import add_from_jsonl

    ids = add_from_jsonl(Store.open(args.db), args.source)
    print(f"added {len(ids)} prompts to {args.db}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from rlhfkit.feedback.app import serve

    _ensure_admin(Store.open(args.db))
    print(f"serving {args.db} on http://{args.host}:{args.port}/ (admin page /admin, API docs /docs)", flush=True)
    serve(args.db, args.host, args.port, args.redundancy, args.rate_limit)
    return 0


def cmd_backup(args: argparse.Namespace) -> int:
    from rlhfkit.feedback.backup import backup

    counts = backup(args.db, args.out)
    print(f"backed up {args.db} to {args.out} (integrity ok): "
          + ", ".join(f"{n} {table}" for table, n in counts.items()))
    return 0


def cmd_annotator(args: argparse.Namespace) -> int:
    _, token = Store.open(args.db).create_annotator(args.name, is_admin=args.admin)
    print(f"{args.name}: {token}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from rlhfkit.feedback.export import export_records, write_jsonl

    n = write_jsonl(export_records(Store.open(args.db), weights=not args.no_weights), args.out)
    print(f"wrote {n} rankings to {args.out}")
    return 0


def cmd_quality(args: argparse.Namespace) -> int:
    from rlhfkit.feedback.export import read_jsonl, write_jsonl
    from rlhfkit.feedback.quality import QualityConfig, apply_weights, assess, format_table

    cfg = QualityConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(QualityConfig)})
    records = read_jsonl(args.data)
    report = assess(records, cfg)
    print(format_table(report))
    print("flagged: " + (", ".join(report["flagged"]) or "none"))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1))
        print(f"report written to {args.out}")
    if args.weighted_out:
        write_jsonl(apply_weights(records, report), args.weighted_out)
        print(f"weighted rankings written to {args.weighted_out}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from rlhfkit.feedback.quality import format_table
    from rlhfkit.feedback.simulate import simulate

    out = simulate(Store.open(args.db), args.spec, n_annotators=args.annotators, redundancy=args.redundancy,
                   seed=args.seed, n_items=args.items)
    print(format_table(out["report"]))
    print("suspected adversarial: " + (", ".join(out["report"]["suspected_adversarial"]) or "none"))
    print(json.dumps(out["summary"], indent=1))
    return 0


def _add_quality_flags(p: argparse.ArgumentParser) -> None:
    from rlhfkit.feedback.quality import QualityConfig

    for f in dataclasses.fields(QualityConfig):
        flag = "--" + f.name.replace("_", "-")
        choices = f.metadata.get("choices")
        p.add_argument(flag, dest=f.name, type=type(f.default), default=f.default, choices=choices,
                       help=f"{f.metadata['help']} (default: {f.default})")


def _rate(text: str) -> float:
    """argparse type of --rate-limit: a number of requests per second, >= 0."""
    try:
        rate = float(text)
    except ValueError:
        rate = -1.0
    if not rate >= 0 or rate == float("inf"):
        raise argparse.ArgumentTypeError(f"expected requests per second >= 0 (0 = no limit), got {text!r}")
    return rate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Collect K-way human rankings and check annotator quality.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    db_help = "SQLite labeling database (created if missing)"

    p = sub.add_parser("init", help="create a labeling database and print the admin token")
    p.add_argument("--db", required=True, help=db_help)
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("add", help="load prompts and candidate responses from JSONL")
    p.add_argument("--db", required=True, help=db_help)
    p.add_argument("--from", dest="source", required=True, metavar="FILE.jsonl",
                   help='records {"prompt", "responses": [2-9 strings], optional "family", "model", "gold_best"}')
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("serve", help="run the ranking web app (prints the admin token if there is none yet)")
    p.add_argument("--db", required=True, help=db_help)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    p.add_argument("--redundancy", type=int, default=3, help="how many annotators rank each item (default: 3)")
    p.add_argument("--rate-limit", type=_rate, default=DEFAULT_RATE, metavar="N",
                   help="requests per second per annotator (per client address without a valid token), "
                        "in bursts of up to 2N; over it: 429 with Retry-After; 0 = no limit (default: %(default)g)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("annotator", help="create an annotator and print their sign-in token")
    p.add_argument("--db", required=True, help=db_help)
    p.add_argument("--name", required=True, help="unique annotator name (appears in exports)")
    p.add_argument("--admin", action="store_true", help="give this annotator admin rights")
    p.set_defaults(func=cmd_annotator)

    p = sub.add_parser("export", help="write all rankings as K-way ranking JSONL (candidate indices)")
    p.add_argument("--db", required=True, help=db_help)
    p.add_argument("--out", required=True, metavar="FILE.jsonl", help="output rankings file")
    p.add_argument("--no-weights", action="store_true",
                   help="leave out the per-ranking 'weight' (annotator reliability clipped to [0,1])")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("backup", help="copy the database consistently and atomically, even while it is served")
    p.add_argument("db", metavar="DB", help="the labeling database to copy")
    p.add_argument("out", metavar="OUT", help="the backup file (replaced atomically if it exists)")
    p.set_defaults(func=cmd_backup)

    p = sub.add_parser("quality", help="agreement, reliability and flags per annotator")
    p.add_argument("--data", required=True, metavar="FILE.jsonl", help="K-way ranking records (from export)")
    p.add_argument("--out", metavar="FILE.json", help="also write the full report as JSON")
    p.add_argument("--weighted-out", metavar="FILE.jsonl", help="also write the records with 'weight' set")
    _add_quality_flags(p)
    p.set_defaults(func=cmd_quality)

    p = sub.add_parser("simulate", help="rank the store's items (or built-in world items) by simulated annotators")
    p.add_argument("--db", required=True, help=db_help)
    p.add_argument("--spec", default="careful:0.6,noisy:0.2,adversarial:0.2",
                   help="annotator pool mix, profile:fraction,... (default: %(default)s)")
    p.add_argument("--annotators", type=int, default=10, help="number of simulated annotators (default: 10)")
    p.add_argument("--redundancy", type=int, default=3, help="annotators per item (default: 3)")
    p.add_argument("--items", type=int, default=60, help="world items to add if the store has none (default: 60)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.set_defaults(func=cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as e:  # --help and usage errors: return the code instead of exiting the caller
        return e.code if isinstance(e.code, int) else 0 if e.code is None else 2
    try:
        return args.func(args)
    except (StoreError, ValueError, OSError) as e:
        print(f"{PROG} {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
