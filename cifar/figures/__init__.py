"""Every figure the pipeline draws, with matplotlib, for files only (no display on CI or servers)."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

__all__ = ["plt"]
