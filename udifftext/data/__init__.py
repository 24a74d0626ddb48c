"""Data: the batch contract (`datasets.py`), the synthetic engine (`synth.py`), the ROI crop (`transforms.py`)
and loaders for SynthText, LAION-OCR, ICDAR13 and TextSeg. Nothing heavy is imported here."""
