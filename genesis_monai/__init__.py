"""genesis_monai: what MONAI lacks for the Genesis family of self-supervised pretraining methods.

Subpackages: ``networks`` (UNet3D, classifier), ``transforms`` (degradations), ``data``
(demo data, cube extraction), ``engines`` (Ignite glue), ``weights`` (checkpoint import).
"""

__version__ = "0.1.0"
