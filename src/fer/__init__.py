"""Facial-emotion recognition on FER-2013: the library behind the pipeline notebooks."""

__version__ = "0.1.0"

# The seven FER-2013 emotions, in the alphabetical order of the Kaggle folders.
CLASS_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
IMAGE_SIZE = 48
# Names in the model registry (fer.models.ARCHITECTURES), kept here so that params can be
# checked without importing Keras; a test keeps the two equal.
ARCHITECTURE_NAMES: tuple[str, ...] = ("seed_cnn",)
