"""Planted circuits: built-in models trained with Strict IIT so a known many-part circuit carries a task.

Gupta et al. 2024 (InterpBench, arXiv 2407.14494); Geiger et al. 2022 (interchange intervention
training). ``graph`` holds the shared types, ``ioi`` / ``greater_than`` the high-level models, ``siit``
the training loop and ``validate`` the checks whose numbers go into the model card.
"""
