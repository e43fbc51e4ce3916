"""labnotes: annotated, literate PyTorch implementations of language-model pretraining objectives."""

__version__ = "0.1.0"

# The site's pages in reading order: shared pieces first, then one page per paper.
PAGES = ["data", "tokenizer", "transformer", "training", "downstream", "mlm", "nsp", "sop", "spanbert", "electra"]

# Modules that register a paper (each defines PAPER = labnotes.training.Paper(...)).
PAPERS = ["mlm", "nsp", "sop", "spanbert", "electra"]
