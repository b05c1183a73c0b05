"""counterfeed: plugins/estimators."""
