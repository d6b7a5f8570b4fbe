"""Models: the families (:mod:`.architectures`), offline ImageNet weights (:mod:`.weights`),
class weights (:mod:`.losses`), loading saved models (:mod:`.io`), the one compiled forward
pass everything predicts through (:mod:`.inference`) and test-time augmentation over it
(:mod:`.tta`). Importing this package does not import
TensorFlow; building, loading or calling a model does."""
from cxrlib.models.architectures import (FEATURE_LAYER, OUTPUT_LAYER, backbone_and_head,
                                         build_model, n_classes_of)
from cxrlib.models.io import ModelFileError, load_model
from cxrlib.models.losses import class_weights
from cxrlib.models.tta import predict_tta
from cxrlib.models.weights import WeightsUnavailable, resolve_imagenet_weights

__all__ = ["FEATURE_LAYER", "OUTPUT_LAYER", "ModelFileError", "WeightsUnavailable",
           "backbone_and_head", "build_model", "class_weights", "load_model", "n_classes_of",
           "predict_tta", "resolve_imagenet_weights"]
