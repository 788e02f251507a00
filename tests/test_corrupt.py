"""Image corruptions for the robustness benchmark (corrupt.py), pinned by hand-made images."""
import math
import re

import numpy as np
import pytest
from scipy import ndimage

from ahsar_deploy import corrupt as C
from ahsar_deploy.corrupt import KINDS, PARAMS, SEVERITIES, corrupt

RANDOM_KINDS = ("gaussian_noise", "salt_pepper", "translate", "rotate")


def _images(n=6, seed=0):
    """n random (N, 784) images in [0, 1], float32."""
    return np.random.default_rng(seed).random((n, 784), dtype=np.float32)


def _pixel(r, c, h=28, w=28):
    img = np.zeros((h, w), np.float32)
    img[r, c] = 1.0
    return img


def _seven():
    """A digit-like '7': a bar and a slanted stroke, slightly blurred, in [0, 1]."""
    img = np.zeros((28, 28), np.float32)
    img[6:9, 7:21] = 1.0
    for i in range(20):
        r, c = 8 + i, 20 - i // 2
        img[r, c - 1:c + 2] = 1.0
    return np.clip(ndimage.gaussian_filter(img, 0.6) * 1.3, 0, 1).astype(np.float32)


# ---- the contract: dtype, shape, range, copies, determinism -----------------------------

@pytest.mark.parametrize("kind", KINDS)
def test_severity_zero_is_a_float32_copy(kind):
    x = _images().astype(np.float64)
    out = corrupt(x, kind, 0)
    assert out.dtype == np.float32 and out.shape == x.shape
    np.testing.assert_array_equal(out, x.astype(np.float32))
    assert not np.shares_memory(out, x)
    x32 = x.astype(np.float32)
    assert not np.shares_memory(corrupt(x32, kind, 0), x32)   # a copy even when no cast


@pytest.mark.parametrize("severity", SEVERITIES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_and_severity_is_float32_in_range_and_leaves_x_alone(kind, severity):
    x = _images()
    before = x.copy()
    for xin in (x, x.reshape(-1, 28, 28), x.reshape(-1, 1, 28, 28)):
        out = corrupt(xin, kind, severity, seed=3)
        assert out.dtype == np.float32 and out.shape == xin.shape
        assert out.min() >= 0.0 and out.max() <= 1.0
        assert not np.array_equal(out, xin)
        # the three layouts are the same images
        np.testing.assert_array_equal(out.reshape(x.shape), corrupt(x, kind, severity, seed=3))
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("kind", KINDS)
def test_a_read_only_memory_map_works(tmp_path, kind):
    x = _images()
    np.save(tmp_path / "x.npy", x)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert not mm.flags.writeable
    out = corrupt(mm, kind, 2)
    assert out.flags.writeable and not np.shares_memory(out, mm)
    np.testing.assert_array_equal(np.load(tmp_path / "x.npy"), x)
    copy0 = corrupt(mm, kind, 0)
    copy0[:] = 0.5   # the clean copy is ours to write
    np.testing.assert_array_equal(mm, x)


@pytest.mark.parametrize("kind", RANDOM_KINDS)
def test_same_seed_same_output_other_seed_other_output(kind):
    x = np.repeat(_seven().reshape(1, 784), 16, axis=0)
    a, b = corrupt(x, kind, 2, seed=5), corrupt(x, kind, 2, seed=5)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, corrupt(x, kind, 2, seed=6))


def test_the_parameter_table_is_complete_and_orders_severities():
    assert set(PARAMS) == set(KINDS) and SEVERITIES == (1, 2, 3)
    for kind, table in PARAMS.items():
        assert sorted(table) == [1, 2, 3], kind
    # MNIST-C's values at severity 2 (google-research/mnist-c corruptions.py defaults)
    assert PARAMS["salt_pepper"][2] == 0.17 and PARAMS["blur"][2] == 2
    assert PARAMS["contrast"][2] == 0.1 and PARAMS["brightness"][2] == 0.5
    assert PARAMS["translate"][2] == 3
    assert PARAMS["rotate"][2] == pytest.approx(math.degrees(0.4))
    assert PARAMS["gaussian_noise"][2] == 0.2   # the project's earlier measurements


# ---- each corruption by hand -------------------------------------------------------------

def test_translate_moves_a_pixel_k_pixels_along_a_drawn_diagonal_with_zero_fill():
    k = PARAMS["translate"][2]
    x = np.repeat(_pixel(10, 12).reshape(1, 784), 40, axis=0)
    out = corrupt(x, "translate", 2, seed=0).reshape(-1, 28, 28)
    seen = set()
    for img in out:
        (r,), (c,) = np.nonzero(img == 1.0)
        dy, dx = r - 10, c - 12
        assert abs(dy) == k and abs(dx) == k
        np.testing.assert_array_equal(img, np.roll(_pixel(10, 12), (dy, dx), axis=(0, 1)))
        seen.add((int(np.sign(dy)), int(np.sign(dx))))
    assert seen == {(-1, -1), (-1, 1), (1, -1), (1, 1)}   # all four directions are drawn
    # a pixel moved off the image is gone (zero fill, no wrap-around)
    edge = corrupt(_pixel(0, 0).reshape(1, 784).repeat(40, 0), "translate", 1, seed=0)
    kept = [img for img in edge if img.any()]
    assert 0 < len(kept) < 40
    for img in kept:   # only the (down, right) draw keeps it
        np.testing.assert_array_equal(img.reshape(28, 28), _pixel(2, 2))


def test_shift_is_np_roll_with_the_wrapped_pixels_zeroed():
    img = np.random.default_rng(1).random((2, 3, 28, 28), dtype=np.float32)
    for dy, dx in [(2, -3), (-4, 4), (0, 1), (-1, 0)]:
        want = np.roll(img, (dy, dx), axis=(2, 3))
        if dy > 0:
            want[..., :dy, :] = 0
        elif dy < 0:
            want[..., dy:, :] = 0
        if dx > 0:
            want[..., :, :dx] = 0
        elif dx < 0:
            want[..., :, dx:] = 0
        np.testing.assert_array_equal(C._shift(img, dy, dx), want)


def test_translate_moves_all_channels_of_an_image_together():
    x = np.stack([_pixel(10, 12), _pixel(15, 5)]).reshape(1, 2 * 784).repeat(8, 0)
    out = corrupt(x, "translate", 3, shape=(2, 28, 28), seed=2).reshape(-1, 2, 28, 28)
    for img in out:
        (r0,), (c0,) = np.nonzero(img[0])
        (r1,), (c1,) = np.nonzero(img[1])
        assert (r0 - 10, c0 - 12) == (r1 - 15, c1 - 5)


def test_rotate_by_multiples_of_90_degrees_is_np_rot90_and_0_is_the_identity():
    img = _pixel(3, 20)[None, None]
    for deg, k in [(90, 1), (180, 2), (-90, -1), (270, 3)]:
        np.testing.assert_array_equal(C._rotate_by(img, deg)[0, 0], np.rot90(img[0, 0], k))
    x = np.random.default_rng(2).random((3, 1, 28, 28), dtype=np.float32)
    np.testing.assert_array_equal(C._rotate_by(x, 0.0), x)
    np.testing.assert_allclose(C._rotate_by(x, 90), np.rot90(x, 1, axes=(2, 3)), atol=0)


def test_rotate_is_bilinear_with_zero_outside():
    # 3x3 image, centre pixel (1, 1), one lit pixel right of it. Turned 45 degrees, output
    # pixel (0, 2) samples the input at (1, 1 + sqrt 2): 2 - sqrt 2 of pixel (1, 2) and the
    # rest from outside the image, which is 0; output (1, 2) samples (1 + r, 1 + r) with
    # r = sqrt(1/2): weight (1 - r) * r on (1, 2).
    img = np.zeros((1, 1, 3, 3), np.float32)
    img[0, 0, 1, 2] = 1.0
    out = C._rotate_by(img, 45)[0, 0]
    r = math.sqrt(0.5)
    assert out[1, 1] == 0
    assert out[0, 2] == pytest.approx(2 - math.sqrt(2), abs=1e-6)
    assert out[1, 2] == pytest.approx((1 - r) * r, abs=1e-6)
    # a pixel in the corner rotated by 45 degrees leaves the image: nothing wraps back
    corner = np.zeros((1, 1, 28, 28), np.float32)
    corner[0, 0, 0, 0] = 1.0
    assert C._rotate_by(corner, 45).sum() == 0


def test_rotate_draws_the_sign_per_image():
    deg = PARAMS["rotate"][1]
    x = np.repeat(_seven().reshape(1, 784), 20, axis=0)
    out = corrupt(x, "rotate", 1, seed=4).reshape(-1, 1, 28, 28)
    plus = C._rotate_by(x.reshape(-1, 1, 28, 28)[:1], deg)[0]
    minus = C._rotate_by(x.reshape(-1, 1, 28, 28)[:1], -deg)[0]
    signs = []
    for img in out:
        if np.allclose(img, np.clip(plus, 0, 1), atol=1e-6):
            signs.append(1)
        else:
            np.testing.assert_allclose(img, np.clip(minus, 0, 1), atol=1e-6)
            signs.append(-1)
    assert set(signs) == {-1, 1}


def test_brightness_adds_the_constant_and_clips():
    x = np.tile(np.array([0.0, 0.2, 0.45, 0.6, 1.0], np.float32), (2, 157))[:, :784]
    for s, c in [(1, 0.3), (2, 0.5), (3, 0.7)]:
        assert PARAMS["brightness"][s] == c
        np.testing.assert_allclose(corrupt(x, "brightness", s),
                                   np.clip(x + np.float32(c), 0, 1), atol=1e-7)
    np.testing.assert_allclose(corrupt(x, "brightness", 2)[0, :5], [0.5, 0.7, 0.95, 1, 1],
                               atol=1e-7)


def test_contrast_keeps_each_image_mean_and_scales_deviations():
    rng = np.random.default_rng(3)
    x = (0.3 + 0.4 * rng.random((4, 784))).astype(np.float32)   # no clipping at any c <= 1
    x[1] += 0.1                                                # a different mean per image
    for s in SEVERITIES:
        c = PARAMS["contrast"][s]
        out = corrupt(x, "contrast", s)
        mean = x.mean(axis=1, keepdims=True, dtype=np.float64)
        np.testing.assert_allclose(out.mean(axis=1, keepdims=True), mean, atol=1e-6)
        np.testing.assert_allclose(out - mean, (x - mean) * c, atol=1e-6)


def test_contrast_mean_is_per_channel_for_colour_images():
    x = np.stack([np.full((4, 4), 0.2), np.full((4, 4), 0.8)]).astype(np.float32)
    x[:, 0, 0] += 0.1
    out = corrupt(x[None], "contrast", 2)[0]
    np.testing.assert_allclose(out.mean(axis=(1, 2)), x.mean(axis=(1, 2)), atol=1e-6)


@pytest.mark.parametrize("severity", SEVERITIES)
def test_blur_keeps_the_sum_of_an_interior_pixel_and_spreads_it(severity):
    sigma = PARAMS["blur"][severity]
    out = corrupt(_pixel(14, 14).reshape(1, 784), "blur", severity).reshape(28, 28)
    assert abs(float(out.sum(dtype=np.float64)) - 1.0) < 1e-6
    assert out.argmax() == 14 * 28 + 14 and out.max() < 0.2
    assert np.count_nonzero(out > 1e-4) > 9
    # a separable Gaussian of the stated sigma: the centre is 1 / (2 pi sigma^2) up to
    # the discrete sampling (exact within 10 % for sigma >= 1)
    assert out[14, 14] == pytest.approx(1 / (2 * math.pi * sigma ** 2), rel=0.1)
    np.testing.assert_allclose(out, out.T, atol=1e-7)


def test_salt_pepper_sets_the_stated_fraction_of_pixels_to_0_or_1():
    x = np.full((50, 784), 0.5, np.float32)
    for s in SEVERITIES:
        out = corrupt(x, "salt_pepper", s, seed=s)
        changed = out != 0.5
        k = round(PARAMS["salt_pepper"][s] * 784)
        np.testing.assert_array_equal(changed.sum(axis=1), k)    # exactly, every image
        assert set(np.unique(out[changed])) == {0.0, 1.0}
        salt = (out == 1.0).sum() / changed.sum()
        assert 0.45 < salt < 0.55                                # 1/2 each, 50 * k draws


def _clipped_normal_std(sigma, half):
    """Standard deviation of N(0, sigma^2) clipped to [-half, half]."""
    a = half / sigma
    phi = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    tail = 0.5 * math.erfc(a / math.sqrt(2))
    var = (1 - 2 * tail - 2 * a * phi) + 2 * tail * a * a    # inside + the clipped mass
    return sigma * math.sqrt(var)


def test_gaussian_noise_std_matches_sigma_on_mid_grey():
    x = np.full((300, 784), 0.5, np.float32)
    for s in SEVERITIES:
        sigma = PARAMS["gaussian_noise"][s]
        d = corrupt(x, "gaussian_noise", s, seed=s) - x
        assert abs(d.mean()) < 2e-3
        if s < 3:   # clipping at +-0.5 changes the std by < 1.2 % at sigma <= 0.2
            assert d.std() == pytest.approx(sigma, rel=0.02)
        # and the clipped-normal std exactly, at every severity
        assert d.std() == pytest.approx(_clipped_normal_std(sigma, 0.5), rel=0.02)
    assert PARAMS["gaussian_noise"][2] == 0.2


@pytest.mark.parametrize("kind", KINDS)
def test_distance_to_the_clean_image_grows_with_severity(kind):
    seven = _seven()
    x = np.stack([seven, np.rot90(seven), seven.T, np.fliplr(seven)]).reshape(4, 784)
    dist = [float(np.abs(corrupt(x, kind, s, seed=1) - x).mean()) for s in (0, 1, 2, 3)]
    assert dist[0] == 0
    assert dist[0] < dist[1] < dist[2] < dist[3], dist


# ---- errors: one line naming the bad value and the choices ----------------------------

def _one_line(excinfo, *words):
    msg = str(excinfo.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_unknown_kind_names_it_and_the_choices():
    with pytest.raises(ValueError) as e:
        corrupt(_images(), "noise", 1)
    _one_line(e, "'noise'", ", ".join(KINDS))


@pytest.mark.parametrize("severity", [4, -1, 1.5, "2", True, None])
def test_unknown_severity_names_it_and_the_choices(severity):
    with pytest.raises(ValueError) as e:
        corrupt(_images(), "blur", severity)
    _one_line(e, repr(severity), "0, 1, 2, 3")


@pytest.mark.parametrize("shape_x, shape, words", [
    ((5, 100), None, ["(5, 100)", "784", "shape=(C, H, W) or (H, W)", "100"]),
    ((5, 784), (27, 28), ["shape=(27, 28)", "(5, 784)", "784"]),
    ((5, 784), (784,), ["shape=(784,)", "(C, H, W) or (H, W)"]),
    ((5, 28, 28), (1, 28, 28), ["shape=(1, 28, 28)", "(5, 28, 28)", "(28, 28)"]),
    ((784,), None, ["(784,)", "(N, F), (N, H, W) or (N, C, H, W)"]),
    ((2, 1, 1, 28, 28), None, ["(2, 1, 1, 28, 28)", "(N, C, H, W)"]),
])
def test_x_that_cannot_be_images_names_its_shape_and_what_fits(shape_x, shape, words):
    with pytest.raises(ValueError) as e:
        corrupt(np.zeros(shape_x, np.float32), "rotate", 1, shape=shape)
    _one_line(e, *words)


def test_an_explicit_image_shape_is_used_for_flat_input():
    x = _seven().reshape(1, 784)
    flat = corrupt(x.reshape(1, 784), "rotate", 2, shape=(1, 28, 28), seed=0)
    np.testing.assert_array_equal(flat, corrupt(x, "rotate", 2, seed=0))
    wide = np.zeros((20, 784), np.float32)
    wide[:, 7 * 56 + 30] = 1.0   # seen as 14 x 56 images: a pixel at (7, 30)
    out = corrupt(wide, "translate", 1, shape=(14, 56), seed=0).reshape(-1, 14, 56)
    for img in out:
        (r,), (c,) = np.nonzero(img)
        assert abs(r - 7) == 2 and abs(c - 30) == 2


def test_blur_extends_the_edges_like_mnist_c():
    """MNIST-C's skimage.filters.gaussian repeats the edge pixels (mode 'nearest'): a flat
    image stays flat, with no dark border, and a stroke at the edge keeps its edge value."""
    flat = np.full((1, 784), 0.6, np.float32)
    np.testing.assert_allclose(corrupt(flat, "blur", 3), flat, atol=1e-6)
    img = np.zeros((28, 28), np.float32)
    img[:, :3] = 1.0   # a bar along the left edge
    out = corrupt(img[None], "blur", 2)[0]
    np.testing.assert_allclose(out, ndimage.gaussian_filter(img, 2.0, mode="nearest"),
                               atol=1e-6)
    assert out[14, 0] > 0.8


@pytest.mark.parametrize("bad,words", [
    (np.full((2, 784), 255.0), "divide by 255"), (np.full((2, 784), -0.1), "not intensities"),
    (np.full((2, 784), np.nan), "NaN or infinite"), (np.full((2, 784), np.inf), "NaN or infinite"),
    (np.array([["a"] * 784]), "dtype"),
])
def test_values_that_are_no_intensities_are_refused(bad, words):
    with pytest.raises(ValueError, match=words) as e:
        corrupt(bad, "blur", 1)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("kw,words", [({"seed": 1.5}, "seed=1.5"), ({"seed": None}, "seed=None"),
                                      ({"shape": 64}, "shape=64"), ({"shape": "88"}, "shape='88'"),
                                      ({"shape": (8.7, 8)}, "tuple of integers")])
def test_bad_seed_and_shape_arguments_are_one_line(kw, words):
    with pytest.raises(ValueError, match=re.escape(words)):
        corrupt(np.zeros((2, 64)), "gaussian_noise", 1, **({"shape": (8, 8)} | kw))


@pytest.mark.parametrize("kind", KINDS)
def test_an_empty_batch_gives_an_empty_batch(kind):
    out = corrupt(np.zeros((0, 64)), kind, 2, shape=(8, 8))
    assert out.shape == (0, 64) and out.dtype == np.float32
