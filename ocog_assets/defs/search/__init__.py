"""Finding the fastest configuration: Bayesian search and grids per dataset|storage."""
