"""The bad-input corpus: damaged copies of real files (``../shared/data``) and of phantoms, made in a temporary
folder by the tests, each with the exit code and the one-line answer ``python -m pipeline`` must give.

:mod:`.build` makes the good files and damages copies of them; :mod:`.evaluate_inputs`, :mod:`.run_inputs` and
:mod:`.dicom_inputs` list the bad inputs; ``tests/test_bad_inputs.py`` runs them.
"""
