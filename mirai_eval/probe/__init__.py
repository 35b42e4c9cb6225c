"""The foresight readout probe: how much of the future a frozen causal generator's hidden state holds.

spec.py        the probe's settings and result types
experiment.py  the whole probe of a set of checkpoints (its method is described there)
measure.py     rollouts, taps and the measures per model
readout.py     the per-look-ahead readout MLPs
sprites.py     sprite positions from decoded readout images (the toy scale's ground truth)
render.py      tables and image panels
replicates.py  the probe over training replicates: intervals and paired differences (issue 17)
"""
