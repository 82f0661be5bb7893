"""empathy_core: find, test and steer an "empathy" direction in a language model's residual stream.

Layers, bottom to top (each imports only from those below it; ``tests/test_layout.py`` checks):

    errors    UserError: the only messages a person sees
    core/     scenarios, models, activations, probes, steering, generation, prompts, export, compute
    store     reading and writing precomputed/ (one home for results)
    study/    dataset and rules, detection experiment, steering sweep, judges, metrics, precompute
    app/      service (no UI), plots, ui/ (one module per Gradio tab)
    cli, bench   entry points: ``python -m empathy_core COMMAND``

Data flow: text -> activations -> probe -> metrics -> store -> plots -> app. Steering reads a
direction and writes generations, which flow on through judges -> metrics -> store.
"""

__version__ = "0.1.0"
