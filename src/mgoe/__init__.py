"""mgoe: MGOE (Macro Graph of Experts) multi-task recommendation, from data import to serving."""

__version__ = "0.1.0"
