"""Conversion of the paper's weights (SD-2-inpainting, upstream UDiffText, LabelEncoder, ViTSTR) into our layout.

`sd2.py` and `upstream.py` hold pure key mappers (state dict in, state dict out), `layouts.py` the key
names and shapes the upstream code produces, `build.py` the file reading and model loading used by
``scripts/convert_checkpoint.py``. See docs/paper_scale.md.
"""
