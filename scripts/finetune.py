"""Purchase-prediction fine-tuning; run with `accelerate launch scripts/finetune.py --help` for every option.

A thin entry point: the implementation is `seqbert.training.finetune` (also runnable as
`accelerate launch -m seqbert.training.finetune`), so the CLI, the demo and this script share it.
"""

import sys

from seqbert.training.finetune import main

if __name__ == "__main__":
    main(sys.argv[1:])
