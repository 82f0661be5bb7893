"""Gradio UI: one module per tab, composed by ``app.py``. The only gradio code outside ``app.py``."""
