"""jinja2 templates for LaTeX and Markdown documents."""
