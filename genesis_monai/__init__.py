"""genesis_monai: what MONAI lacks for the Genesis family of self-supervised pretraining methods.

Subpackages: ``networks`` (UNet3D, classifier), ``transforms`` (degradations), ``losses``
(multi-task sum), ``data`` (demo data, cube extraction), ``engines`` (Ignite glue), ``weights``
(checkpoint import); ``bundles`` finds and loads the MONAI bundles. See docs/architecture.md.
"""

__version__ = "0.1.0"


def __getattr__(name):
    # lazy, so that ``import genesis_monai`` stays light (no monai.bundle import until needed)
    if name == "load_bundle":
        from genesis_monai.bundles import load_bundle

        return load_bundle
    raise AttributeError(f"module 'genesis_monai' has no attribute {name!r}")
