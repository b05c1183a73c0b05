"""counterfeed: plugins/recommenders."""
