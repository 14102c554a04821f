"""Server-side rendering of the incident pages: HTML and SVG built in Python.

Why the service draws the graph and the plots itself instead of shipping a JavaScript
charting library: the pages must work with no internet (nothing from a CDN), a vendored
library would be a second, unreviewed code base to pin, licence and update, and the
drawings needed (a layered graph of at most 40 nodes, line plots of a few hundred points,
bars) are a few hundred lines of Python that the tests can check as text. The only script
is a small inline one for the live list and the feedback buttons.
"""

from causalwatch.publish.render.graph_svg import layout_graph, render_graph, severity_colour
from causalwatch.publish.render.pages_html import (
    incident_page,
    incident_row,
    list_page,
    login_page,
    message_page,
    shares_of,
)
from causalwatch.publish.render.plot_svg import render_plot

__all__ = [
    "incident_page",
    "incident_row",
    "layout_graph",
    "list_page",
    "login_page",
    "message_page",
    "render_graph",
    "render_plot",
    "severity_colour",
    "shares_of",
]
