"""The human in RLHF: a ranking web app with annotator quality control (`rlhfkit label --help`).

store.py (SQLite) <- candidates.py (load prompts + K responses) <- app.py + static/ (annotators rank)
-> export.py (K-way ranking JSONL, weighted) <- quality.py + agreement.py + crowd_bt.py (who to trust);
simulate.py runs the world's simulated annotators through the same store. Nothing here imports torch.
"""
