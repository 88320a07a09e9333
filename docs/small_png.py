"""Save a sheet as a PNG small enough to commit (the docs pictures stay under about 300 KB)."""
import io

from PIL import Image

LIMIT = 290_000


def save_small_png(img, path, limit=LIMIT):
    """Optimised PNG; if that is over ``limit`` bytes, 256 colours (Floyd-Steinberg dithered); if still
    over, the 256-colour image scaled down until it fits. Returns the bytes written."""
    def encode(im):
        buf = io.BytesIO()
        im.save(buf, format="PNG", optimize=True)
        return buf.getvalue()

    data = encode(img)
    if len(data) > limit:
        rgb = img.convert("RGB")
        while True:
            data = encode(rgb.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG))
            if len(data) <= limit or min(rgb.size) < 64:
                break
            rgb = rgb.resize((round(rgb.width * 0.9), round(rgb.height * 0.9)), Image.Resampling.LANCZOS)
    with open(path, "wb") as fh:
        fh.write(data)
    return len(data)
