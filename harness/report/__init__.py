"""Self-contained HTML reports: recommendation (recommend.py), SVG plots (plots.py), the view model
(view.py) and rendering with the Jinja templates (render.py, templates/)."""
