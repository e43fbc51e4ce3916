"""labnotes: annotated, literate PyTorch implementations of language-model pretraining
objectives."""

__version__ = "0.1.0"

# The site's pages in reading order: shared pieces, one page per paper, then each paper's
# experiment (labnotes/experiments/). The command line's list of papers is labnotes/registry.py.
PAGES = [
    "data", "tokenizer", "transformer", "training", "downstream", "pairs",
    "mlm", "nsp", "sop", "spanbert", "electra", "xlnet", "bart", "dim", "contrastive",
    "chinese_wwm",
    "experiments.common", "experiments.mlm", "experiments.nsp", "experiments.sop",
    "experiments.spanbert", "experiments.electra", "experiments.xlnet",
    "experiments.bart", "experiments.dim", "experiments.contrastive", "experiments.chinese_wwm",
    "experiments.compare",
]
