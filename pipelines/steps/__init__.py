"""Step scripts the pipeline's processing jobs run inside the ML image (`python -m pipelines.steps.X`)."""
