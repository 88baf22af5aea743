"""The SageMaker training pipeline: settings, definition, step scripts, local run and registry."""
