"""empathy_core: find, test and steer an "empathy" direction in a language model's residual stream.

Modules, in the order data flows through them:
dataset (scenarios and hand-written data) -> models (registry, loading, layers) ->
activations (one forward pass, pooled per layer) -> probes (directions, save/load) ->
metrics -> experiments (detection runs) -> artifacts/plots -> app.
Steering reads a probe and writes generations.
"""

__version__ = "0.1.0"
