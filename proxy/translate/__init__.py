"""Translators: one module per upstream stream kind, each feeding a LegacyStream. CORE."""
