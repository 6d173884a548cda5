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

# SMART-Net: the 2D multi-task network, its single-output segmentation form and the 2D -> 3D downstream networks
from genesis_monai.networks.scse import SCSEBlock
from genesis_monai.networks.slice_to_volume import SMARTNetVolumeClassifier, SMARTNetVolumeSegmenter
from genesis_monai.networks.smart_net import SMARTNet, SMARTNetEncoder, SMARTNetSegmentation

__all__ += ["SCSEBlock", "SMARTNet", "SMARTNetEncoder", "SMARTNetSegmentation", "SMARTNetVolumeClassifier",
            "SMARTNetVolumeSegmenter"]
