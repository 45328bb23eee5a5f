"""rlhfkit: the whole RLHF recipe end to end — pretrain, SFT, reward model on human rankings, PPO.

Run `rlhfkit --help` for the stages; `rlhfkit run` runs the whole recipe on the built-in world.
"""

__version__ = "0.1.0"
