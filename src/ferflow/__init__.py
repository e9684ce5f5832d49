"""Facial-emotion recognition on FER-2013: the library behind the pipeline notebooks."""

__version__ = "0.2.0"  # pyproject.toml reads it; CHANGELOG.md says what changed

# The seven FER-2013 emotions, in the alphabetical order of the Kaggle folders.
CLASS_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
IMAGE_SIZE = 48
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
# Names in the model registry (ferflow.model.registry.ARCHITECTURES), kept here so that params can be
# checked without importing Keras; a test keeps the two equal.
ARCHITECTURE_NAMES: tuple[str, ...] = (
    "seed_cnn",
    "seed_cnn_deep",
    "seed_cnn_compact",
    "vgg",
    "vgg_quarter",
    "vgg_half",
    "vgg_half_deep",
    "vgg_three_quarter",
    "resnet_small",
    "resnet_half",
    "efficientnet_b0",
    "face_resnet",
)
# The training recipe's choices: names of the builders in ferflow.training.recipe (OPTIMIZERS,
# SCHEDULES, CLASS_WEIGHTINGS), kept here so that params can be checked without Keras; a test
# keeps each pair equal.
OPTIMIZER_NAMES: tuple[str, ...] = ("adam", "adamw", "sgd")
SCHEDULE_NAMES: tuple[str, ...] = ("plateau", "cosine")
CLASS_WEIGHTING_NAMES: tuple[str, ...] = ("none", "sqrt", "balanced")
# The pretrained weights each architecture can start from (train.weights; "none" for any): read by
# the registry's build_model and by the params check.
PRETRAINED_WEIGHTS: dict[str, tuple[str, ...]] = {"efficientnet_b0": ("imagenet",), "face_resnet": ("dlib",)}
# Names in ferflow.evaluation.robustness.CORRUPTIONS, for the same reason.
CORRUPTION_NAMES: tuple[str, ...] = (
    "gaussian_noise",
    "salt_and_pepper",
    "gaussian_blur",
    "brightness",
    "contrast",
    "jpeg",
    "eye_occlusion",
    "mouth_occlusion",
    "random_patch",
    "rotation",
    "horizontal_shift",
    "down_up_scale",
)
