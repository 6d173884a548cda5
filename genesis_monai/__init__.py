"""genesis_monai: what MONAI lacks for the Genesis family of self-supervised pretraining methods.

Subpackages: ``networks`` (UNet3D, classifier), ``transforms`` (degradations), ``data``
(demo data, cube extraction), ``engines`` (Ignite glue), ``weights`` (checkpoint import).
"""

__version__ = "0.1.0"


def __getattr__(name):
    # lazy, so that ``import genesis_monai`` stays light (no monai.bundle import until needed)
    if name == "load_bundle":
        from genesis_monai.bundle_loading import load_bundle

        return load_bundle
    raise AttributeError(f"module 'genesis_monai' has no attribute {name!r}")
