"""Tables (pandas) and figures (matplotlib/seaborn) built from a job's outputs."""
