"""Plots and the written report of a reproduction run."""

from .writer import plot_class_forgetting, plot_figure7, write_report

__all__ = ["plot_class_forgetting", "plot_figure7", "write_report"]
