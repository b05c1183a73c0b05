"""counterfeed: plugins/metrics."""
