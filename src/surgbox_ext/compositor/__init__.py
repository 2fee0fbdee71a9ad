"""The default compositor plugin (``default``): YUV 4:2:0 composition with swscale scaling."""

from .yuv import PANEL_FIELDS, DefaultCompositor, PanelCell, format_value, load_font, panel_cells, plane_array, plane_views, render_panel, render_slate

__all__ = ["PANEL_FIELDS", "DefaultCompositor", "PanelCell", "format_value", "load_font", "panel_cells", "plane_array", "plane_views", "render_panel", "render_slate"]
