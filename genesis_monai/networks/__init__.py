"""Networks of the Genesis family with parameter names that load the published checkpoints."""

from genesis_monai.networks.classifier import GenesisClassifier
from genesis_monai.networks.norms import ContBatchNorm3d
from genesis_monai.networks.unet3d import DIVISOR, UNet3D, check_spatial_size

__all__ = ["UNet3D", "GenesisClassifier", "ContBatchNorm3d", "check_spatial_size", "DIVISOR"]
