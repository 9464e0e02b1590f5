"""The built-in synthetic dataset: procedurally drawn texture classes, no download.

Each class is a kind of pattern (stripes, checks, rings, ...). Everything else is
random per image and shared by all classes: orientation (within 30 degrees of
vertical, symmetric about it, so a horizontal flip keeps an image in its class
while a 90-degree rotation shows: rotation prediction has a cue), scale, phase,
position, edge sharpness, the two colours, contrast, pixel noise and a few
soft colour blobs as distractors. Colour and position therefore carry no class
evidence, the class mean images are nearly flat (a linear model on raw pixels
does poorly), and the class survives the crops, flips and colour jitter that
SimCLR uses, because the evidence is the pattern's shape, seen at any scale.

These textures are stationary: a small tile of an image does not show where in the image it
lies, so the jigsaw puzzle has no answer on them (like tissue tiles, much alike everywhere).
`perspective` > 0 draws each pattern on a surface tilted away at the top, its scale shrinking
upwards by a factor of up to exp(perspective) and its lines converging: a tile's local scale
and slant then show its place (symmetric about the vertical axis, so flips keep the class).
"""

import numpy as np

CLASS_NAMES = ["stripes", "checks", "rings", "spots", "hexagons",
               "waves", "spirals", "grid", "dashes", "zigzag"]
_CHUNK = 64  # images rendered at once: bounds the float temporaries at large sizes


def make_synthetic(num_classes: int = 4, per_class: int = 150, test_per_class: int = 100,
                   image_size: int = 32, seed: int = 0, perspective: float = 0.0):
    """Return (train_images, train_labels, test_images, test_labels, class_names).

    Train and test are drawn independently, each class from its own seeded
    stream: a class's images depend only on seed, split, class and count, so
    asking for more classes adds images without changing the others. `perspective` (0: flat)
    is the largest per-image tilt, drawn uniformly in [perspective / 2, perspective].
    """
    train = _draw_split(num_classes, per_class, image_size, seed, perspective, split=0)
    test = _draw_split(num_classes, test_per_class, image_size, seed, perspective, split=1)
    return (*train, *test, CLASS_NAMES[:num_classes])


def _draw_split(num_classes, per_class, size, seed, perspective, split):
    images = np.empty((num_classes * per_class, size, size, 3), dtype=np.uint8)
    for c in range(num_classes):
        rng = np.random.default_rng([seed, split, c])
        for start in range(0, per_class, _CHUNK):
            n = min(_CHUNK, per_class - start)
            first = c * per_class + start
            images[first:first + n] = _render(c, n, size, perspective, rng)
    labels = np.repeat(np.arange(num_classes, dtype=np.int64), per_class)
    order = np.random.default_rng([seed, split, 99]).permutation(len(labels))
    return images[order], labels[order]


def _render(c, n, size, perspective, rng):
    """Draw n images of class c as uint8 (n, size, size, 3), computing in float32."""
    def per_image(low, high):                                # one random scalar per image, (n,1,1)
        return rng.uniform(low, high, (n, 1, 1)).astype(np.float32)

    coords = ((np.arange(size) + 0.5) / size).astype(np.float32)   # pixel centres in [0, 1)
    sy, sx = coords[None, :, None], coords[None, None, :]    # screen coordinates, y down
    x, y = sx, sy                                            # where the pattern is evaluated
    if perspective:
        x, y = _tilt(sx, sy, per_image(perspective / 2, perspective))
    theta = per_image(np.pi / 3, 2 * np.pi / 3)              # within 30 degrees of vertical: an "up" for rotation
    u = x * np.cos(theta) + y * np.sin(theta)                # along the pattern
    v = -x * np.sin(theta) + y * np.cos(theta)               # across it
    freq = per_image(2.5, 6.0)                               # cycles per image side
    phase = per_image(0, 2 * np.pi)
    tau = np.float32(2 * np.pi)

    name = CLASS_NAMES[c]
    if name == "stripes":
        s = np.sin(tau * freq * u + phase)
    elif name == "checks":
        s = 1.5 * np.sin(tau * freq * u + phase) * np.sin(tau * freq * v + per_image(0, tau))
    elif name == "rings":
        r = np.hypot(x - per_image(-0.2, 1.2), y - per_image(-0.2, 1.2))
        s = np.sin(tau * freq * r + phase)
    elif name == "spots":
        s = _band_noise(n, size, rng, freq)
        if perspective:
            s = _sample_periodic(s, x, y)
    elif name == "hexagons":
        s = sum(np.cos(tau * freq * (x * np.cos(theta + a) + y * np.sin(theta + a)) + per_image(0, tau))
                for a in (0, np.pi / 3, 2 * np.pi / 3)) / 1.5
    elif name == "waves":
        s = np.sin(tau * freq * u + 0.35 * np.sin(tau * freq / 2 * v) + phase)
    elif name == "spirals":
        cx, cy = per_image(-0.2, 1.2), per_image(-0.2, 1.2)
        arms = rng.choice(np.array([-3, -2, 2, 3], dtype=np.float32), (n, 1, 1))  # both handednesses
        s = np.sin(arms * np.arctan2(y - cy, x - cx) + tau * freq * np.hypot(x - cx, y - cy) + phase)
    elif name == "grid":
        lines = np.maximum(np.abs(np.cos(np.pi * freq * u + phase)), np.abs(np.cos(np.pi * freq * v + phase)))
        s = 2 * lines ** 8 - 1
    elif name == "dashes":
        gaps = np.sin(tau * freq / 1.5 * v + per_image(0, tau)) > 0
        s = np.where(gaps, np.float32(-1), np.sin(tau * freq * u + phase))
    else:  # zigzag
        triangle = 2 * np.abs((freq / 2 * v) % 1 - 0.5) - 0.5   # in [-0.5, 0.5]
        s = np.sin(tau * (freq * u + 0.6 * triangle) + phase)

    # Random edge sharpness: from soft sinusoids to crisp two-tone patterns.
    gain = per_image(1, 4)
    pattern = (np.tanh(gain * s) / np.tanh(gain))[..., None]            # (n, size, size, 1) in [-1, 1]

    # Two random colours around a random base; which one is "ink" is random too.
    base = rng.uniform(0.25, 0.75, (n, 1, 1, 3)).astype(np.float32)
    contrast = rng.uniform(0.15, 0.3, (n, 1, 1, 1)) * rng.choice([-1, 1], (n, 1, 1, 1))
    tint = rng.uniform(-0.1, 0.1, (n, 1, 1, 3))
    img = base + (contrast + tint).astype(np.float32) * pattern

    for _ in range(2):                                       # soft distractor blobs, any class
        dist2 = (sx - per_image(0, 1)) ** 2 + (sy - per_image(0, 1)) ** 2   # blobs lie on the screen
        alpha = (np.exp(-dist2 / (2 * per_image(0.06, 0.18) ** 2)) * per_image(0, 0.8))[..., None]
        img = img * (1 - alpha) + rng.uniform(0, 1, (n, 1, 1, 3)).astype(np.float32) * alpha

    img += rng.standard_normal(img.shape, dtype=np.float32) * per_image(0.02, 0.08)[..., None]
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


def _band_noise(n, size, rng, freq):
    """Random blob texture: white noise band-passed around `freq` cycles per image side."""
    radius = np.hypot(np.fft.fftfreq(size)[:, None] * size, np.fft.rfftfreq(size)[None, :] * size)
    band = np.exp(-((radius - freq) ** 2) / (2 * (0.35 * freq) ** 2))
    field = np.fft.irfft2(np.fft.rfft2(rng.standard_normal((n, size, size))) * band, s=(size, size))
    return (field / (field.std(axis=(1, 2), keepdims=True) + 1e-8)).astype(np.float32)


def _tilt(sx, sy, k):
    """Pattern coordinates of a surface tilted away at the top: locally isotropic magnification
    m = exp(k (0.5 - sy)), so the pattern's scale shrinks by exp(k) upwards and lines converge."""
    k = np.maximum(k, np.float32(1e-4))                      # tiny tilts: no division by ~0
    m = np.exp(k * (0.5 - sy))
    y = np.exp(k / 2) * -np.expm1(-k * sy) / k               # integral of m over the height: dy/dsy = m
    x = 0.5 + (sx - 0.5) * m
    return x, y


def _sample_periodic(field, x, y):
    """Bilinear samples of the periodic (n, S, S) field at coordinates x, y in image sides."""
    n, size, _ = field.shape
    x, y = np.broadcast_to(x, (n, size, size)) * size - 0.5, np.broadcast_to(y, (n, size, size)) * size - 0.5
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = (x - x0).reshape(n, -1), (y - y0).reshape(n, -1)
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    flat = field.reshape(n, -1)

    def at(dy, dx):
        index = (((y0 + dy) % size) * size + (x0 + dx) % size).reshape(n, -1)
        return np.take_along_axis(flat, index, axis=1)
    top = at(0, 0) * (1 - fx) + at(0, 1) * fx
    bottom = at(1, 0) * (1 - fx) + at(1, 1) * fx
    return (top * (1 - fy) + bottom * fy).reshape(n, size, size).astype(np.float32)
