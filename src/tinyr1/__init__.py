"""tinyr1: teach small language models to reason on math with pure reinforcement learning.

Importing the package stays light: heavy modules (torch, transformers) load when used.
"""

__version__ = "0.1.0"
