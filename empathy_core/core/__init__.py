"""The core: models, activations, directions, steering hooks, generation, prompts, export, and the compute thread.

Nothing here knows about the study, the stored results or the app.
"""
