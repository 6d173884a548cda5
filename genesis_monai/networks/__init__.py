"""Networks of the Genesis family with parameter names that load the published checkpoints."""

from genesis_monai.networks.classifier import GenesisClassifier
from genesis_monai.networks.norms import ContBatchNorm3d
from genesis_monai.networks.semantic_genesis import (PatternClassificationHead, SemanticGenesisClassifier,
                                                     SemanticGenesisNet)
from genesis_monai.networks.unet3d import DIVISOR, GenesisEncoder, UNet3D, check_spatial_size
from genesis_monai.networks.output_activation import WithSigmoid, ends_with_sigmoid, needs_sigmoid, with_sigmoid
from genesis_monai.networks.width import scale_channels, validate_width

__all__ = [
    "UNet3D",
    "GenesisEncoder",
    "GenesisClassifier",
    "SemanticGenesisNet",
    "SemanticGenesisClassifier",
    "PatternClassificationHead",
    "ContBatchNorm3d",
    "check_spatial_size",
    "DIVISOR",
    "scale_channels",
    "validate_width",
    "WithSigmoid",
    "ends_with_sigmoid",
    "needs_sigmoid",
    "with_sigmoid",
]
