"""The default compositor plugin (``default``): YUV 4:2:0 composition with swscale scaling."""

from .yuv import DefaultCompositor, load_font, render_panel, render_slate

__all__ = ["DefaultCompositor", "load_font", "render_panel", "render_slate"]
