"""Training container: the Keras recommender and its SageMaker entry point."""
