"""`cmdcl compare`: effect or noise between runs on the same videos and seeds. compare (pairing runs,
the intervals), stats (bootstrap, permutation and t intervals), compare_output (the table and files).

May import: head.metrics (predictions files), head.training (the layout of a multi-seed run), cmdcl.core.
"""
