"""counterfeed: plugins/catalogs."""
