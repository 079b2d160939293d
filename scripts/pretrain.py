"""Masked-behavior pretraining; run with `accelerate launch scripts/pretrain.py --help` for every option.

A thin entry point: the implementation is `seqbert.training.pretrain` (also runnable as
`accelerate launch -m seqbert.training.pretrain`), so the CLI, the demo and this script share it.
"""

import sys

from seqbert.training.pretrain import main

if __name__ == "__main__":
    main(sys.argv[1:])
