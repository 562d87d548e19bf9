"""Front ends: the tracer (sc.Tensor proxies), and importers for Hugging Face and ONNX models."""
