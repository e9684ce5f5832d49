"""The pipeline runner and the maintainer tools: stages, reports, presets, shipping, the baseline
check, ensembles, the ONNX assets.
"""
