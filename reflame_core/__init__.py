"""ReFLAME core: everything that computes (I/O, rendering, fitting, landmarks, texture).

Importable without any GUI package; ``reflame_app`` builds on it, never the reverse.
"""

__version__ = "0.1.0"
