"""Serving with NVIDIA Triton Inference Server: model repositories, the server environment, the client."""
