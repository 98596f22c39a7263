"""amnesiac: delete training records from a trained PyTorch model and measure how well they were forgotten.

Implements *Amnesiac Machine Learning* (Graves, Nagisetty and Ganesh, AAAI 2021).
"""

__version__ = "0.1.0"
