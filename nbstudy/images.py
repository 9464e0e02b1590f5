"""Decode one image file of any common kind into uint8 (H, W, 3).

Files in the wild differ in format and pixel mode; each is brought to 8-bit RGB
the same way, so a dataset can mix them:
- L (grayscale), 1, P, CMYK, YCbCr: converted to RGB (gray copied to 3 channels).
- LA, RGBA, P with transparency: composited on white (what a viewer with a
  white page shows; an opaque image is unchanged), not just alpha dropped,
  because the colour stored under transparent pixels is arbitrary.
- 16/32-bit integer and float grayscale (I;16, I, F): stretched to 0-255 by the
  image's own min-max range. Medical 16-bit files often hold 10-12 bits, so a
  fixed /257 would leave them nearly black; a constant image becomes black.
- EXIF orientation is applied; multi-page files give their first page.
Resizing to a square `resolution` uses LANCZOS when shrinking (antialiased)
and BICUBIC when enlarging. A non-square image is resized to a square without
cropping, so its aspect ratio changes (the study's datasets are square).
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from nbstudy.errors import NbstudyError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def is_image_file(path: Path) -> bool:
    """True for a visible file with an image extension (skips .DS_Store, ._x.png, ...)."""
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_EXTENSIONS


def decode_image(path, resolution: int | None = None) -> np.ndarray:
    """Return the image at `path` as C-contiguous uint8 (H, W, 3), resized to
    (resolution, resolution) unless resolution is None."""
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            rgb = _to_rgb(img)
            if resolution is not None:
                rgb = resize_square(rgb, resolution)
            return np.array(rgb, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UnreadableImage(path, " ".join(str(e).split())) from None


class UnreadableImage(NbstudyError):
    """An image file that cannot be decoded (empty, truncated, not an image); `reason` is the decoder's."""

    def __init__(self, path, reason: str):
        super().__init__(f"cannot decode image {path} ({reason}): replace or delete the file")
        self.path, self.reason = path, reason


def resize_square(img: Image.Image, resolution: int) -> Image.Image:
    """Resize to (resolution, resolution): LANCZOS when shrinking, BICUBIC when enlarging."""
    if img.size == (resolution, resolution):
        return img
    shrink = resolution < max(img.size)
    return img.resize((resolution, resolution),
                      Image.Resampling.LANCZOS if shrink else Image.Resampling.BICUBIC)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _stretch_to_8bit(np.asarray(img)).convert("RGB")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("LA", "La", "PA", "RGBA", "RGBa"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if img.mode in ("RGB", "L", "1", "CMYK", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    raise ValueError(f"unsupported pixel mode {img.mode}")


def _stretch_to_8bit(pixels: np.ndarray) -> Image.Image:
    pixels = np.nan_to_num(pixels.astype(np.float64))
    low, high = float(pixels.min()), float(pixels.max())
    scaled = (pixels - low) * (255.0 / (high - low)) if high > low else np.zeros_like(pixels)
    return Image.fromarray(np.round(scaled).astype(np.uint8))
