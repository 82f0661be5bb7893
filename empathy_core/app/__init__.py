"""The app: ``service`` (what the app does, no UI), ``plots`` (figures from stored results) and ``ui`` (one module per tab)."""
