"""Metrics: pure functions over maps, masks and trajectories; they return numbers, never plot."""
