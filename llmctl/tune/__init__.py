"""Finding the best MAX_ACTIVE under a latency target."""
