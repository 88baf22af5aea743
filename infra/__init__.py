"""CDK: typed settings, stacks and constructs."""
