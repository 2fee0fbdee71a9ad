"""BIS monitor support: ASCII parser, ``bis`` source plugin, simulator.

The BIS Vista binary protocol is not implemented (see docs/bis.md: the public material is
third-party reverse engineering with conflicting details and no capture to test against).
"""

from .parser import BISParser, BISRecord, Header, ParserStats, canonical_name, parse_bytes, parse_file

__all__ = ["BISParser", "BISRecord", "Header", "ParserStats", "canonical_name", "parse_bytes", "parse_file"]
