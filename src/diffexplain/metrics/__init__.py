"""Metrics: pure functions over maps, masks and trajectories; they return numbers and curves, never plot.

``games`` (deletion/insertion + AUC), ``stats`` (paired comparisons, bootstrap CIs), ``localisation`` (against
truth masks, with chance levels), ``correlation`` (between maps, over steps), ``sanity`` (cascading model
randomisation), ``token_roles``; ``substrates`` and ``ranking`` are their shared perturbation helpers.
"""
