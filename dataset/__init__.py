"""MovieLens data layer: sources, normalized tables, validation and versioning."""
