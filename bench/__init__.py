"""Host-only benchmarks of the model and of serving; never copied into an image."""
