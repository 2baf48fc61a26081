"""The PyTorch models of every family, laid out as the reference repositories lay out their modules
(state-dict keys included), and the multi-scale deformable attention op they sample with."""
