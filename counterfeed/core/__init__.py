"""counterfeed: core."""
