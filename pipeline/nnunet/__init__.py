"""The project's own nnU-Net v2 models: environment setup, CPU trainers, and the demo-model training command.

Import :mod:`pipeline.nnunet.compat` and call :func:`~pipeline.nnunet.compat.prepare_nnunet_environment` before
any ``nnunetv2`` module is imported: nnU-Net reads some settings from the environment at import time.
"""
