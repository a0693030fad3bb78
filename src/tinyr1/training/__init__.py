"""Everything a training loop needs around its algorithm: the policy, optimizer and schedule, the
problem stream, micro-batching, every forward pass, checkpoints and the run folder.

policy.py, optim.py, problems.py, batching.py, forward.py, checkpoint.py, trainer_state.py, run.py; the loops
themselves are in `tinyr1.recipes`.
"""
