"""SageMaker pipeline definition (SDK 3.x) and the step scripts it runs."""
