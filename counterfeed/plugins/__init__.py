"""counterfeed: plugins."""
