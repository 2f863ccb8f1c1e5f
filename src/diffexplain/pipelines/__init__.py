"""Pipelines: the recipe each ``pipeline=`` choice runs per prompt item, and the figures it draws."""
