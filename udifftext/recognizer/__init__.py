"""Scene-text recognizer (ViTSTR): reads word crops for L_ocr, evaluation, and as the frozen visual
encoder of the char-encoder pretraining."""
