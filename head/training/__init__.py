"""The training loop: `train` (one readable loop), its schedule, losses (loss, grounding_loss), device and
process setup (runtime), the files of a run (run_files), and several seeds of one run (seeds, seed_runs).

May import: head.model, head.data, head.metrics, cmdcl.core. Never head.comparison or head.report.
"""
