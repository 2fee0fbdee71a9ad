"""Test suites that plugin vendors run on their own plugins (they need ``pytest``).

* :mod:`surgbox.testing.store_conformance` -- the Store contract and its optional capabilities.
"""
