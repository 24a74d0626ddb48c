"""Draw the demo's painted-layer example: the "closed" label of storefront.png as a brush layer (CC0).

usage: python data/examples/demo/make_demo_examples.py   (rewrites the PNGs beside it)

gr.ImageEditor layers are RGBA images the size of the background: painted pixels are opaque, the rest
transparent; the demo turns every non-empty layer into one region (alpha > 0). The examples' composite is
the plain image: the editor loads the composite as its background, so a painted one would leak into it.
"""

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE.parent


def main() -> None:
    mask = np.asarray(Image.open(EXAMPLES / "storefront_mask.png").convert("L")) > 127  # (H, W)
    layer = np.zeros((*mask.shape, 4), np.uint8)  # (H, W, 4) transparent
    layer[mask] = (255, 64, 160, 255)  # the demo brush colour, opaque
    painted = Image.fromarray(layer, "RGBA")
    painted.save(HERE / "storefront_layer_open.png")
    # Box-only examples carry an empty layer: an example with no layers leaves the editor's old ones in place.
    Image.new("RGBA", painted.size, (0, 0, 0, 0)).save(HERE / "storefront_layer_empty.png")


if __name__ == "__main__":
    main()
