"""RandElasticInPlane against a SciPy oracle of the reference's elastic deformation, and its statistics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from genesis_monai.transforms import RandElasticInPlane
from genesis_monai.transforms.elastic import gaussian_matrix
from reference_elastic import reference_elastic


def test_gaussian_matrix_is_scipy_gaussian_filter_constant_mode():
    from scipy.ndimage import gaussian_filter1d

    v = np.random.default_rng(0).uniform(-1, 1, 40)
    g = gaussian_matrix(40, 8.0, dtype=torch.float64).numpy()
    np.testing.assert_allclose(g @ v, gaussian_filter1d(v, 8.0, mode="constant", cval=0.0), atol=1e-12)


@pytest.mark.parametrize("shape", [(64, 64, 32), (24, 40, 8)])
def test_same_noise_gives_the_reference_cube(shape):
    rng = np.random.default_rng(1)
    image = rng.random(shape)
    n0, n1 = rng.uniform(-1, 1, shape), rng.uniform(-1, 1, shape)
    expected = reference_elastic(image, n0, n1)
    t = RandElasticInPlane()
    disp = t.displacements(torch.tensor(np.stack([n0, n1])[None]))
    got = t.warp(torch.tensor(image)[None, None], disp)[0, 0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-10)
    # float32, as training runs it
    got32 = t.warp(torch.tensor(image, dtype=torch.float32)[None, None], disp.float())[0, 0].numpy()
    np.testing.assert_allclose(got32, expected, atol=2e-4)


def test_displacement_statistics_match_the_reference():
    """Fact sheet §6.4: displacement std ~3.5 voxels, max ~10 on 64x64x32 cubes (sigma 8, alpha 991)."""
    t = RandElasticInPlane(seed=0)
    noise = torch.rand((8, 2, 64, 64, 32), generator=torch.Generator().manual_seed(0)) * 2 - 1
    disp = t.displacements(noise)
    assert 2.5 < float(disp.std()) < 4.5
    assert 6.0 < float(disp.abs().amax(dim=(1, 2, 3, 4)).mean()) < 14.0


def test_depth_is_never_displaced_and_values_stay_in_range():
    x = torch.zeros(2, 1, 32, 32, 8)
    x[..., 3] = 1.0  # one bright depth slice: an in-plane warp keeps it exactly where it is
    out = RandElasticInPlane(seed=0)(x)
    torch.testing.assert_close(out, x)
    y = torch.rand(2, 1, 32, 32, 8)
    z = RandElasticInPlane(seed=0)(y)
    assert z.shape == y.shape and z.dtype == y.dtype and 0.0 <= float(z.min()) and float(z.max()) <= 1.0
    assert not torch.allclose(z, y)


def test_seeded_reproducible_and_prob():
    x = torch.rand(4, 1, 16, 16, 8)
    a, b = RandElasticInPlane(seed=3)(x), RandElasticInPlane(seed=3)(x)
    torch.testing.assert_close(a, b)
    g = torch.Generator().manual_seed(5)
    torch.testing.assert_close(RandElasticInPlane(prob=0.0)(x, generator=g), x)
    assert RandElasticInPlane().describe()["alpha"] == 991.0


def test_bad_input_is_refused():
    t = RandElasticInPlane()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        t(torch.full((1, 1, 8, 8, 8), 500.0))
    with pytest.raises(ValueError):
        t(torch.rand(1, 8, 8, 8))
    with pytest.raises(ValueError, match="sigma"):
        RandElasticInPlane(sigma=0)
