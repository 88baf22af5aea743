"""The one definition of every feature, and the Feast repo and SageMaker feature groups built from it."""
