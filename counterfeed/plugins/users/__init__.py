"""counterfeed: plugins/users."""
