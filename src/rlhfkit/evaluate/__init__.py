"""Evaluation and reporting: gold-judge metrics of a policy (`rlhfkit eval`) and a run's self-contained
HTML report (`rlhfkit report RUN_DIR`).

    metrics.py   evaluate(policy, prompts, ...) -> dict (gold mean, refusals, KL, win rate, diversity)
    policies.py  Policy, HFPolicy, BestOfNPolicy, load_policy(path)
    cli.py       `rlhfkit eval`
    report.py    `rlhfkit report`, write_report(run_dir) -> Path
    plots.py     matplotlib (Agg) figures as base64 PNG for the report
    reward_metrics.py  reward-model accuracy, calibration and gold agreement (used by `rlhfkit reward`)

Nothing is imported here so `rlhfkit report` does not pay for torch and the CLI help stays instant.
"""
