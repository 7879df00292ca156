"""nnU-Net v2 inference for every uncertainty configuration: each (member, TTA view) forward pass once per case."""
