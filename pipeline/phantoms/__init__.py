"""Seeded synthetic data: CT-like phantoms with references (training, demo, tests) and synthetic probability maps
(metric benchmarks)."""
