"""Order domain: pure rules, no I/O."""
