"""HTTP layer: thin controllers that parse, call one service function and map the result."""
