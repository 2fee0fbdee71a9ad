"""surgbox_ext: surgbox's default plugins.

They register through the ``surgbox`` entry-point group (``surgbox_ext.plugin``), exactly as a
third-party package would, at the low ``DEFAULT_PRIORITY`` so a vendor plugin of the same name
replaces them. Nothing in :mod:`surgbox` imports this package.
"""
