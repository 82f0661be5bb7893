"""Plotly charts follow the page theme: in Gradio's dark theme every chart gets plotly's dark template.

Gradio draws a ``gr.Plot`` with ``window.Plotly.react``, and knows nothing of the page theme. The
script below wraps ``Plotly.react`` once Plotly has loaded: on a dark page it swaps in the
``plotly_dark`` template (from the installed plotly, so both stay in step), makes the paper
transparent and lightens the grey and black reference lines that would vanish on dark.
"""

from __future__ import annotations

import json

import plotly.io as pio

_SCRIPT = """<script>
(() => {
  const DARK = %s;
  const isDark = () => document.body.classList.contains('dark') || document.documentElement.classList.contains('dark')
    || document.querySelector('.gradio-container.dark, .dark') !== null;
  const light = c => (c === '#000000' || c === '#555555' || c === '#777777') ? '#cccccc' : c;
  function darken(layout) {
    layout.template = DARK;
    layout.paper_bgcolor = 'rgba(0,0,0,0)';
    layout.plot_bgcolor = 'rgba(0,0,0,0)';
    (layout.shapes || []).forEach(s => { if (s.line) s.line.color = light(s.line.color); });
    (layout.annotations || []).forEach(a => { a.font = Object.assign({}, a.font || {}, {color: '#e5e5e5'}); });
    return layout;
  }
  function wrap() {
    const P = plotly;
    if (!P || P.__empathyThemed) return !!P;
    const react = P.react;
    P.react = function (gd, data, layout, config) {
      if (isDark() && layout) {
        layout = darken(layout);
        (data || []).forEach(t => { if (t.line && t.line.color) t.line.color = light(t.line.color);
                                    if (t.marker && typeof t.marker.color === 'string') t.marker.color = light(t.marker.color); });
      }
      return react.call(this, gd, data, layout, config);
    };
    P.__empathyThemed = true;
    return true;
  }
  // Wrap the moment Gradio's Plotly chunk assigns window.Plotly, before its first chart is drawn.
  let plotly = window.Plotly;
  Object.defineProperty(window, 'Plotly', {configurable: true, get: () => plotly,
                                           set: v => { plotly = v; wrap(); }});
  wrap();
})();
</script>"""


def theme_head() -> str:
    """The ``<head>`` script that gives Plotly charts the dark template on a dark page."""
    dark = pio.templates["plotly_dark"].to_plotly_json()
    return _SCRIPT % json.dumps(dark, separators=(",", ":"))
