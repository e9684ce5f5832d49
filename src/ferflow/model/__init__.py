"""Models: the architecture registry, the sidecar (model card) and the checked loaders, test-time
views, export, ONNX Runtime.
"""
