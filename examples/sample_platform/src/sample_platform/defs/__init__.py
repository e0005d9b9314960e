"""Definitions folder of the sample platform (``dg``'s ``defs`` convention)."""
