"""revcurse: reproduce, explain and fix the LLM reversal curse on your own machine."""

__version__ = "0.1.0"
