"""Character-level text side: tokenizer, the char text encoder (UNet context) and its pretraining heads."""
