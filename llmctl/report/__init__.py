"""Shareable reports: bench and tune results read into one model, drawn as SVG, laid out as HTML."""
