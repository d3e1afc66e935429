"""A vLLM-faithful engine simulator."""
