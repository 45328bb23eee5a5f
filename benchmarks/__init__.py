"""Side-by-side benchmarks of rlhfkit against its peers (TRL trainers, HF `generate`, HF eager training).

    python -m benchmarks.run [--quick] [--cases sft,dpo]

Each case runs rlhfkit and its peer in one process on the same model, data, batch and sequence lengths,
fp32, no gradient checkpointing, for the same number of steps, and checks that the final losses agree
before a speed ratio is reported: a fast wrong trainer does not count. Results go to
benchmarks/results/latest.json (a list of rows) and latest.md (a table). See benchmarks/README.md.
TRL is a benchmark dependency only; nothing under src/ imports it.
"""
