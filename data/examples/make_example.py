"""Draw the bundled example (a shop front with two signs) and its mask; CC0, made for this repository.

usage: python data/examples/make_example.py   (rewrites storefront.png and storefront_mask.png beside it)
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent
FONTS = HERE.parents[1] / "data/fonts/dejavu"


def main() -> None:
    rng = np.random.default_rng(7)
    width, height = 320, 240
    y = np.linspace(0, 1, height)[:, None, None]
    wall = (1 - y) * np.array([196, 170, 140]) + y * np.array([150, 118, 92])  # warm plaster gradient
    wall = wall + rng.normal(0, 6, (height, width, 1))  # grain
    img = Image.fromarray(np.clip(np.broadcast_to(wall, (height, width, 3)), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for row in range(150, height, 14):  # brick courses under the window
        draw.line([(0, row), (width, row)], fill=(120, 84, 64), width=2)
        for col in range((row // 14) % 2 * 20, width, 40):
            draw.line([(col, row), (col, row + 14)], fill=(120, 84, 64), width=2)
    draw.rectangle([40, 30, 280, 86], fill=(34, 60, 48), outline=(214, 190, 120), width=4)  # main sign
    draw.text(
        (160, 58),
        "BAKERY",
        font=ImageFont.truetype(str(FONTS / "DejaVuSerif-Bold.ttf"), 34),
        fill=(236, 220, 170),
        anchor="mm",
    )
    draw.rounded_rectangle([196, 108, 300, 144], radius=8, fill=(236, 232, 220), outline=(60, 60, 60), width=2)
    draw.text(
        (248, 126),
        "closed",
        font=ImageFont.truetype(str(FONTS / "DejaVuSans.ttf"), 22),
        fill=(170, 30, 30),
        anchor="mm",
    )
    img = img.filter(ImageFilter.GaussianBlur(0.4))
    img.save(HERE / "storefront.png")
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).rounded_rectangle([204, 113, 292, 139], radius=6, fill=255)  # the "closed" label
    mask.save(HERE / "storefront_mask.png")


if __name__ == "__main__":
    main()
