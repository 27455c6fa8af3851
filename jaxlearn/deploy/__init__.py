"""A finished run out of jaxlearn: predictions on files, the exported artifact, int8
quantization, ensembles and the HTTP server."""
