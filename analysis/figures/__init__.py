"""Figure builders: tidy tables from :mod:`analysis` in, plotly figures out, no computation."""
