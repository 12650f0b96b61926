"""Teaching helpers for the chapters: toy problems, readings of measured numbers, plots, widgets, live figures.

Modules: ``toys`` (2-D toy distributions, a toy flow trainer, a distance between clouds),
``toy_mdp`` (the small MDPs of chapters 3 to 5), ``readings`` (sentences about measured numbers,
worded by their sign and size), ``plots`` (static Matplotlib figures), ``widgets`` (ipywidgets: they
need a running kernel) and ``live`` (Vega-Lite figures that run in the rendered book).

This layer imports the core only. Nothing is imported here: ``plots`` and ``widgets`` need
Matplotlib (and ipywidgets), the chapters' extras, so import the module you use, e.g.
``from rql_lite.teaching import plots``.
"""

__all__ = ["live", "plots", "readings", "toy_mdp", "toys", "widgets"]
