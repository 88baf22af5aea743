"""Serving container: the HTTP server and the predictor."""
