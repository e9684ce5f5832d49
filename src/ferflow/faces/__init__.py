"""Photos: decoding, face detectors (MTCNN in NumPy around its networks), cropping and
classification (fer predict).
"""
