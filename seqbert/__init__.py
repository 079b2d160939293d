"""seqbert: pretrained Transformers for e-commerce behavior sequences."""

__version__ = "0.1.0"
