"""Reinforcement learning pieces shared by the PPO, GRPO/RLOO and best-of-n stages."""
