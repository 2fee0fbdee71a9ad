"""The default compositor plugin (``default``): YUV 4:2:0 composition with swscale scaling, the
data panel (:mod:`.panel`: formatted values, alarm colours, REC clock, BIS trend) and the
CONNECTING / NO SIGNAL slates (:mod:`.slates`)."""

from .fields import PANEL_FIELDS, FieldSpec, Limits, format_field, format_value, severity
from .geometry import EVENT_ORDER, event_rows, panel_layout
from .panel import PanelCell, panel_cells, render_panel
from .slates import render_slate
from .text import fit_text, load_font
from .trend import Trend
from .yuv import DefaultCompositor, plane_array, plane_views

__all__ = [
    "EVENT_ORDER", "PANEL_FIELDS", "DefaultCompositor", "FieldSpec", "Limits", "PanelCell", "Trend", "event_rows",
    "fit_text", "format_field", "format_value", "load_font", "panel_cells", "panel_layout", "plane_array",
    "plane_views", "render_panel", "render_slate", "severity",
]
