"""Example surgbox plugin package (see README.md)."""
